"""The backfill's final report: what happened to each object, what it cost, how fast it went."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from cos_autotag.outcome import Outcome, RecordResult
from cos_autotag_tools import cos_facts

from .rate import BucketStats

# Outcomes a backfill adds to the pipeline's own (labeled, skipped, duplicate, failed).
WOULD_LABEL = "would-label"  # --dry-run: eligible, unlabeled; the paid call was not made
SENT = "sent"  # --via-scf: handed to the deployed function in an event
MAX_FAILED_SHOWN = 20


@dataclass(frozen=True)
class BackfillResult:
    """An object finished with one of the backfill's own outcomes (WOULD_LABEL, SENT)."""

    bucket: str
    key: str
    outcome: str
    reason: str = ""
    error_code: str = ""
    retryable: bool = False


@dataclass
class Report:
    bucket: str
    region: str
    prefix: str
    run: str  # label | dry-run | via-scf
    scenes: tuple[str, ...] = cos_facts.DETECT_DEFAULT_SCENES
    started: float = field(default_factory=time.monotonic)
    listed: int = 0  # objects this run looked at (listing and earlier failures)
    resumed_skipped: int = 0  # listed again but finished by an earlier run
    retried: int = 0  # failed in an earlier run, tried again now
    labeled: int = 0
    already_labeled: int = 0  # the marker was on the object: one read, no detect-label
    would_label: int = 0
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # API requests by operation, retries included
    detect_answered: int = 0  # detect-label calls Cloud Infinite answered: what it bills
    detect_reused: int = 0  # answers an interrupted run paid for, reused from the checkpoint
    events_sent: int = 0
    rate: BucketStats | None = None
    interrupted: bool = False
    aborted: str = ""  # why the run stopped before the end of the listing
    elapsed_s: float = 0.0

    def add(self, result: RecordResult | BackfillResult) -> None:
        if result.outcome == Outcome.LABELED:
            self.labeled += 1
        elif result.outcome == Outcome.DUPLICATE:
            self.already_labeled += 1
        elif result.outcome == WOULD_LABEL:
            self.would_label += 1
        elif result.outcome == SENT:
            self.sent += 1
        elif result.outcome == Outcome.SKIPPED:
            self.skipped[result.reason or "unspecified"] += 1
        else:
            self.add_failure(result.key, result.reason, result.error_code, result.retryable)

    def add_failure(self, key: str, reason: str, error_code: str = "", retryable: bool = False) -> None:
        self.failed.append({"key": key, "reason": reason, "error_code": error_code, "retryable": retryable})

    @property
    def finished(self) -> int:
        return (
            self.labeled
            + self.already_labeled
            + self.would_label
            + self.sent
            + sum(self.skipped.values())
            + len(self.failed)
        )

    def stop_clock(self) -> None:
        self.elapsed_s = round(time.monotonic() - self.started, 3)

    def cost(self) -> dict[str, Any]:
        """detect-label's cost at Cloud Infinite's public price (first tier of the month)."""
        if self.run == "dry-run":
            calls, basis = self.would_label, "estimate: one call per object that would be labeled"
        elif self.run == "via-scf":
            calls, basis = self.sent, "at most: the function skips objects already labeled"
        else:
            calls, basis = self.detect_answered, "detect-label calls answered"
        out: dict[str, Any] = {"detect_label_calls": calls, "usd": cos_facts.detect_cost_usd(calls), "basis": basis}
        if len(self.scenes) > 1:
            # Whether CI bills each scene of one request separately is not documented.
            out["usd_if_billed_per_scene"] = cos_facts.detect_cost_usd(calls * len(self.scenes))
        return out

    def as_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed_s or round(time.monotonic() - self.started, 3)
        out: dict[str, Any] = {
            "bucket": self.bucket,
            "region": self.region,
            "prefix": self.prefix,
            "run": self.run,
            "listed": self.listed,
            "finished": self.finished,
            "resumed_skipped": self.resumed_skipped,
            "retried": self.retried,
            "labeled": self.labeled,
            "already_labeled": self.already_labeled,
            "skipped": dict(self.skipped),
            "failed": self.failed,
            "failed_count": len(self.failed),
            "calls": dict(self.calls),
            "calls_total": sum(self.calls.values()),
            "cost": self.cost(),
            "detect_reused": self.detect_reused,
            "elapsed_s": elapsed,
            "objects_per_s": round(self.finished / elapsed, 2) if elapsed > 0 else 0.0,
            "interrupted": self.interrupted,
        }
        if self.run == "dry-run":
            out["would_label"] = self.would_label
        if self.run == "via-scf":
            out["sent"], out["events_sent"] = self.sent, self.events_sent
        if self.rate is not None:
            out["rate"] = asdict(self.rate)
        if self.aborted:
            out["aborted"] = self.aborted
        return out

    def render(self) -> str:
        """The report for a person, on the terminal."""
        d = self.as_dict()
        where = f"cos://{self.bucket}/{self.prefix}" + (f" ({self.region})" if self.region else "")
        title = {"label": "backfill", "dry-run": "backfill --dry-run", "via-scf": "backfill --via-scf"}[self.run]
        lines = [f"{title} of {where}" + (": INTERRUPTED" if self.interrupted else "")]
        if self.aborted:
            lines.append(f"  stopped early: {self.aborted}")
        lines.append(f"  objects listed      {d['listed']}  (finished {d['finished']})")
        if self.resumed_skipped or self.retried:
            lines.append(
                f"  from the checkpoint {self.resumed_skipped} already done, {self.retried} earlier failures retried"
            )
        if self.run == "dry-run":
            lines.append(f"  would label         {self.would_label}")
        elif self.run == "via-scf":
            lines.append(f"  sent to SCF         {self.sent} objects in {self.events_sent} events")
        else:
            lines.append(f"  labeled             {self.labeled}")
        if self.run != "via-scf":
            lines.append(f"  already labeled     {self.already_labeled}")
        lines.append(f"  skipped             {sum(self.skipped.values())}")
        for reason, count in self.skipped.most_common():
            lines.append(f"    {reason:<28} {count}")
        lines.append(f"  failed              {len(self.failed)}")
        for failure in self.failed[:MAX_FAILED_SHOWN]:
            lines.append(f"    {failure['key']}: {failure['reason']}")
        if len(self.failed) > MAX_FAILED_SHOWN:
            lines.append(f"    ... and {len(self.failed) - MAX_FAILED_SHOWN} more (see the JSON report)")
        calls = ", ".join(f"{op} {n}" for op, n in sorted(self.calls.items())) or "none"
        lines.append(f"  API calls           {d['calls_total']}: {calls}")
        cost = d["cost"]
        calls_count, basis = cost["detect_label_calls"], cost["basis"]
        lines.append(f"  detect-label cost   USD {cost['usd']:.4f} for {calls_count} calls ({basis})")
        if "usd_if_billed_per_scene" in cost:
            per_scene = cost["usd_if_billed_per_scene"]
            lines.append(f"    USD {per_scene:.4f} if each of {len(self.scenes)} scenes is billed")
        if self.detect_reused:
            reused = self.detect_reused
            lines.append(f"  answers reused      {reused} (paid by an interrupted run, kept in the checkpoint)")
        if self.rate is not None and self.rate.throttles:
            lines.append(
                f"  throttled           {self.rate.throttles} times; rate cut to {self.rate.lowest_qps} "
                f"of {self.rate.ceiling_qps} QPS, now {self.rate.rate_qps}"
            )
        lines.append(f"  elapsed             {d['elapsed_s']} s, {d['objects_per_s']} objects/s")
        return "\n".join(lines)
