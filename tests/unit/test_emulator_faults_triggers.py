"""Fault knobs as values, and trigger records/matching, without HTTP."""

from __future__ import annotations

import pytest

from cos_autotag_tools.emulator.faults import FaultInjector, Faults
from cos_autotag_tools.emulator.triggers import ObjectEvent, Trigger, build_record, validate_trigger_events


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duplicate_deliveries": 0},
        {"batch_records": 0},
        {"latency_s": -1},
        {"error_5xx_rate": 1.5},
        {"detect_throttle_rate": -0.1},
        {"detect_qps": 0},
        {"throttle_code": "TooFast"},
        {"error_5xx_codes": ("Teapot",)},
    ],
)
def test_invalid_faults_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Faults(**kwargs)  # type: ignore[arg-type]


def test_same_seed_same_draws() -> None:
    faults = Faults(error_5xx_rate=0.5, seed=7)
    first, second = FaultInjector(faults), FaultInjector(faults)
    a = [first.server_error_for("GetObject") for _ in range(50)]
    b = [second.server_error_for("GetObject") for _ in range(50)]
    assert a == b and None in a and any(a)


def test_error_5xx_ops_limits_the_fault() -> None:
    injector = FaultInjector(Faults(error_5xx_rate=1.0, error_5xx_ops=["DetectLabel"]))
    assert injector.server_error_for("GetObject") is None
    assert injector.server_error_for("DetectLabel") in ("SlowDown", "InternalError")


def test_detect_token_bucket_refills() -> None:
    now = [100.0]
    injector = FaultInjector(Faults(detect_qps=20), clock=lambda: now[0])
    results = [injector.detect_throttled() for _ in range(40)]
    assert results[:20] == [False] * 20 and results[20:] == [True] * 20
    now[0] += 0.125  # 20 qps: two and a half tokens back
    assert [injector.detect_throttled() for _ in range(3)] == [False, False, True]


def test_latency_per_operation() -> None:
    injector = FaultInjector(Faults(latency_s=0.01, latency_by_op={"DetectLabel": 0.2}))
    assert injector.latency_for("GetObject") == pytest.approx(0.01)
    assert injector.latency_for("DetectLabel") == pytest.approx(0.21)


def event(key: str, name: str = "cos:ObjectCreated:Put") -> ObjectEvent:
    return ObjectEvent(
        name, "photos-1250000000", "ap-guangzhou", key, 3, "image/png", {}, "rid", "auth", "127.0.0.1", 1.0
    )


def trigger(**kw: object) -> Trigger:
    args: dict[str, object] = {
        "trigger_id": 1,
        "bucket": "photos-1250000000",
        "handler": lambda e, c: None,
        "events": ("cos:ObjectCreated:*",),
        "prefix": "",
        "suffix": "",
        "retry_num": 2,
        "retry_delay_s": 0.0,
        "time_limit_ms": 1000,
        "memory_mb": 128,
        "function_name": "f",
    }
    args.update(kw)
    return Trigger(**args)  # type: ignore[arg-type]


def test_trigger_matching() -> None:
    assert trigger().matches(event("a.jpg"))
    assert trigger().matches(event("a.jpg", "cos:ObjectCreated:Copy"))
    assert not trigger().matches(event("a.jpg", "cos:ObjectRemove:Delete"))
    assert trigger(events=("cos:ObjectRemove:*",)).matches(event("a", "cos:ObjectRemove:Delete"))
    assert not trigger(events=("cos:ObjectCreated:Post",)).matches(event("a.jpg"))
    assert trigger(prefix="in/", suffix=".jpg").matches(event("in/a.jpg"))
    assert not trigger(prefix="in/", suffix=".jpg").matches(event("out/a.jpg"))
    assert not trigger(prefix="in/", suffix=".jpg").matches(event("in/a.png"))
    assert not trigger(bucket="other-1250000000").matches(event("a.jpg"))


def test_unknown_event_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a COS trigger event"):
        validate_trigger_events(["cos:ObjectCreated:Tagging"])
    assert validate_trigger_events("cos:ObjectCreated:Put") == ("cos:ObjectCreated:Put",)


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("raw", "/1250000000/photos/a b/中.jpg"), ("url", "/1250000000/photos/a%20b/%E4%B8%AD.jpg")],
)
def test_record_key_encoding(encoding: str, expected: str) -> None:
    record = build_record(event("a b/中.jpg"), "1250000000", "fn", encoding)
    assert record["cos"]["cosObject"]["key"] == expected
    assert (
        record["cos"]["cosObject"]["url"]
        == "http://photos-1250000000.cos.ap-guangzhou.myqcloud.com/a%20b/%E4%B8%AD.jpg"
    )
    assert record["event"]["eventQueue"] == "qcs:0:scf:gz:appid/1250000000:default.fn.$LATEST"
