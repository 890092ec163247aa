"""The backfill report: counts by outcome, cost at the public price, the human rendering."""

from __future__ import annotations

from cos_autotag.outcome import Outcome, RecordResult
from cos_autotag_tools import cos_facts
from cos_autotag_tools.backfill.rate import BucketStats
from cos_autotag_tools.backfill.report import SENT, WOULD_LABEL, BackfillResult, Report

B = "photos-1250000000"


def result(outcome: str, reason: str = "", key: str = "k.jpg") -> BackfillResult:
    # The report counts the pipeline's outcomes and the backfill's own alike, by their word.
    return BackfillResult(B, key, outcome, reason=reason)


def test_results_are_counted_by_outcome_and_skip_reason() -> None:
    report = Report(B, "ap-guangzhou", "", "label")
    for r in [
        result("labeled"),
        result("labeled"),
        result("duplicate", "marker on the object"),
        result("skipped", "not a JPEG or PNG"),
        result("skipped", "not a JPEG or PNG"),
        result("skipped", "too small"),
        RecordResult(B, "bad.jpg", Outcome.FAILED, reason="DetectLabel: InternalError", error_code="InternalError"),
    ]:
        report.add(r)
    d = report.as_dict()
    assert (d["labeled"], d["already_labeled"], d["failed_count"], d["finished"]) == (2, 1, 1, 7)
    assert d["skipped"] == {"not a JPEG or PNG": 2, "too small": 1}
    assert d["failed"] == [
        {"key": "bad.jpg", "reason": "DetectLabel: InternalError", "error_code": "InternalError", "retryable": False}
    ]


def test_cost_is_the_answered_detect_calls_at_the_public_price() -> None:
    report = Report(B, "ap-guangzhou", "", "label")
    report.detect_answered = 2000
    assert report.cost()["usd"] == cos_facts.detect_cost_usd(2000) == 3.0
    assert "usd_if_billed_per_scene" not in report.cost()


def test_a_dry_run_estimates_from_what_would_be_labeled() -> None:
    report = Report(B, "ap-guangzhou", "", "dry-run", scenes=("web", "camera"))
    for _ in range(10):
        report.add(result(WOULD_LABEL))
    cost = report.cost()
    assert cost["detect_label_calls"] == 10
    assert cost["usd"] == cos_facts.detect_cost_usd(10)
    assert cost["usd_if_billed_per_scene"] == cos_facts.detect_cost_usd(20)
    assert report.as_dict()["would_label"] == 10


def test_a_fan_out_reports_what_was_sent_and_an_upper_bound() -> None:
    report = Report(B, "ap-guangzhou", "", "via-scf")
    for _ in range(3):
        report.add(result(SENT))
    report.events_sent = 1
    d = report.as_dict()
    assert (d["sent"], d["events_sent"], d["cost"]["detect_label_calls"]) == (3, 1, 3)
    assert d["cost"]["basis"].startswith("at most")


def test_the_rendering_names_every_count_and_the_cost() -> None:
    report = Report(B, "ap-guangzhou", "img/", "label")
    report.listed = 3
    report.add(result("labeled"))
    report.add(result("skipped", "too small"))
    report.add(RecordResult(B, "x/failed.jpg", Outcome.FAILED, reason="boom"))
    report.calls.update({"DetectLabel": 1, "ListObjects": 1})
    report.detect_answered = 1
    report.rate = BucketStats(10.0, 9.0, 7.0, throttles=3, cuts=1, waited_s=0.5)
    report.interrupted = True
    text = report.render()
    for expected in [
        "cos://photos-1250000000/img/",
        "INTERRUPTED",
        "labeled             1",
        "too small",
        "x/failed.jpg: boom",
        "DetectLabel 1, ListObjects 1",
        f"USD {cos_facts.detect_cost_usd(1):.4f}",
        "throttled           3 times",
    ]:
        assert expected in text, expected


def test_only_the_first_failures_are_listed_on_the_terminal() -> None:
    report = Report(B, "ap-guangzhou", "", "label")
    for i in range(25):
        report.add(RecordResult(B, f"f{i}.jpg", Outcome.FAILED, reason="x"))
    text = report.render()
    assert "f19.jpg" in text and "f20.jpg" not in text and "and 5 more" in text
    assert len(report.as_dict()["failed"]) == 25
