"""API calls per record, counted in the emulator's request log per key (not timed).

New object: the upload's event. Duplicate: the same event delivered again. Own Copy echo: in
metadata mode the function writes by copying the object onto itself, which fires
cos:ObjectCreated:Copy; the emulator's trigger delivers that event to the function like SCF.
In tags mode the write is PutObjectTagging, which fires no event: the echo count there is the
number of extra invocations the trigger made.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from typing import Any

from .common import Figure

# Metadata mode's new object: HEAD, GET Object acl (the copy carries the object's ACL), detect-label, copy.
GOALS = {"tags": (3, 1), "metadata": (4, 1, 0)}


def _calls(stack: Any, key: str, since: float, until: float = float("inf")) -> dict[str, int]:
    """The key's requests by operation in [since, until), the upload itself not counted."""
    ops = Counter(
        r.op for r in stack.emulator.requests if r.key == key and since <= r.timestamp < until and r.op != "PutObject"
    )
    return dict(ops)


def _mode(mode: str) -> dict[str, Any]:
    from tests.support.constants import BUCKET
    from tests.support.function_stack import running_stack
    from tests.support.images import jpeg
    from tests.support.scf import context

    # The function's JSON logs go to stdout, from the trigger's threads too: keep the report readable.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), running_stack() as stack:
        app = stack.app(mode=mode)
        trigger = stack.emulator.add_trigger(BUCKET, app.handle, retry_delay_s=0.01)
        key = f"calls/{mode}.jpg"
        stack.put(key, jpeg(7 if mode == "tags" else 8))
        stack.emulator.wait_idle(30)
        stack.emulator.wait_idle(30)  # an echo is delivered after the first run ends
        stack.emulator.remove_trigger(trigger)
        runs = sorted(stack.emulator.invocations, key=lambda run: run.started_at)
        first = runs[0]
        echoes = runs[1:]
        new = _calls(stack, key, first.started_at, echoes[0].started_at if echoes else float("inf"))
        echo: dict[str, int] = _calls(stack, key, echoes[0].started_at) if echoes else {}
        # The duplicate: SCF delivers the first event again (at-least-once), after the work is done.
        since = stack.emulator.requests[-1].timestamp + 1e-6
        summary = app.handle(first.event, context())
        duplicate = _calls(stack, key, since)
        labeled = first.result["labeled"] if isinstance(first.result, dict) else 0
    return {
        "new": new,
        "duplicate": duplicate,
        "echo": echo,
        "echo_invocations": len(echoes),
        "echo_events": [run.event["Records"][0]["event"]["eventName"] for run in echoes],
        "labeled": labeled,
        "duplicate_outcome": summary["duplicates"],
    }


def _text(ops: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in ops.items()) or "none"


def measure() -> Figure:
    tags, metadata = _mode("tags"), _mode("metadata")
    count = {mode: {phase: sum(run[phase].values()) for phase in ("new", "duplicate", "echo")} for mode, run in
             (("tags", tags), ("metadata", metadata))}  # fmt: skip
    measured = {
        "tags": (count["tags"]["new"], count["tags"]["duplicate"]),
        "metadata": (count["metadata"]["new"], count["metadata"]["duplicate"], count["metadata"]["echo"]),
    }
    met = (
        measured == GOALS
        and tags["labeled"] == metadata["labeled"] == 1
        and tags["duplicate_outcome"] == metadata["duplicate_outcome"] == 1
        and tags["echo_invocations"] == 0
        and metadata["echo_events"] == ["cos:ObjectCreated:Copy"]
    )
    figure = Figure(
        name="API calls per record: new object / duplicate / own Copy echo",
        value="tags {} / {}; metadata {} / {} / {}".format(*measured["tags"], *measured["metadata"]),
        baseline="-",
        ratio="-",
        goal="tags 3 / 1; metadata 4 / 1 / 0",
        met=met,
        raw={"tags": tags, "metadata": metadata},
    )
    figure.notes.append(
        "counted per key in the emulator's request log (the upload itself not counted), events delivered by the "
        f"emulator's SCF trigger: tags mode new object {_text(tags['new'])}, duplicate {_text(tags['duplicate'])}, "
        f"and its write fired {tags['echo_invocations']} further invocation(s); metadata mode new object "
        f"{_text(metadata['new'])}, duplicate {_text(metadata['duplicate'])}, and its copy fired "
        f"{metadata['echo_events']}, answered with {_text(metadata['echo'])}"
    )
    if not met:
        problems = []
        for mode, goal in GOALS.items():
            for phase, got, want in zip(("new", "duplicate", "echo"), measured[mode], goal, strict=False):
                if got != want:
                    run = tags if mode == "tags" else metadata
                    problems.append(f"{mode} mode, {phase}: {got} calls ({_text(run[phase])}) against {want}")
        reason = ""
        if tags["new"].get("GetObjectTagging", 0) > 1:
            reason = (
                " In tags mode the pipeline reads the tag set a second time right before writing: PutObjectTagging "
                "replaces the whole set and takes no condition, so tags changed during detect-label (by the user or "
                "a new upload) are merged from a fresh read instead of being overwritten. The goal's 3 holds only "
                "without that re-read, i.e. by accepting that lost update; the extra call is a plain COS read, not "
                "a detect-label call."
            )
        figure.miss = "; ".join(problems) + "." + reason
    return figure
