"""`cos-autotag backfill` refuses bad input with one clear line, before any call is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from cos_autotag_tools.backfill import run_backfill
from cos_autotag_tools.backfill.checkpoint import CheckpointWriter
from cos_autotag_tools.backfill.cli import parse_options

CREDS = {"TENCENTCLOUD_SECRETID": "AKIDx", "TENCENTCLOUD_SECRETKEY": "secret-key-x"}
# Nothing listens here: any call made by mistake would fail the run with another code or message.
ENV = {**CREDS, "AUTOTAG_COS_ENDPOINT": "http://127.0.0.1:9"}
BASE = ["--bucket", "photos-1250000000", "--region", "ap-guangzhou", "--no-progress"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--bucket", "photos", "--region", "ap-guangzhou"], ENV, "not a <name>-<appid> bucket"),
        (["--bucket", "photos-1250000000", "--region", "guangzhou"], ENV, "not a region name"),
        ([*BASE, "--concurrency", "0"], ENV, "--concurrency must be 1 to 64"),
        ([*BASE, "--qps", "0"], ENV, "--qps must be above 0"),
        ([*BASE, "--burst", "0.5"], ENV, "--burst must be at least 1"),
        ([*BASE, "--batch", "1001"], ENV, "--batch must be 1 to 1000"),
        ([*BASE, "--via-scf", " "], ENV, "--via-scf needs a function name"),
        (BASE, {**ENV, "AUTOTAG_SCF_ENDPOINT": "127.0.0.1:80"}, "AUTOTAG_SCF_ENDPOINT='127.0.0.1:80' is not valid"),
        (BASE, {**ENV, "AUTOTAG_MODE": "labels"}, "AUTOTAG_MODE='labels' is not valid"),
        (BASE, {**ENV, "AUTOTAG_BUCKETS": "other-1250000000"}, "not in AUTOTAG_BUCKETS"),
        (BASE, {"AUTOTAG_COS_ENDPOINT": "http://127.0.0.1:9"}, "no COS credentials"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_backfill(argv, env=env) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_short_region_codes_and_the_scf_endpoint_are_understood() -> None:
    options = parse_options(
        ["--bucket", "photos-1250000000", "--region", "gz", "--via-scf", "fn", "--scf-region", "sh"],
        {**ENV, "AUTOTAG_SCF_ENDPOINT": "http://127.0.0.1:8080"},
    )
    assert (options.region, options.scf_region) == ("ap-guangzhou", "ap-shanghai")
    assert options.scf_endpoint == ("http", "127.0.0.1:8080")
    assert options.via_scf == "fn"


def test_a_dry_run_never_fans_out() -> None:
    options = parse_options([*BASE, "--via-scf", "fn", "--dry-run"], ENV)
    assert options.dry_run and options.via_scf is None


def test_a_checkpoint_of_another_bucket_is_refused_and_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cp.jsonl"
    scope = {"bucket": "other-1250000000", "region": "ap-guangzhou", "prefix": "", "mode": "tags", "via": "local"}
    CheckpointWriter(path, scope).close()
    before = path.read_bytes()
    assert run_backfill([*BASE, "--resume", str(path)], env=ENV) == 2
    assert "belongs to another run: its bucket is 'other-1250000000'" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_a_missing_bucket_exits_2_naming_the_flag_and_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_backfill(["--region", "ap-guangzhou"], env=ENV) == 2
    err = capsys.readouterr().err
    assert "no bucket given: pass --bucket NAME-APPID, or set COS_BUCKET" in err
    # The variable fills in for the flag.
    options = parse_options(["--region", "ap-guangzhou"], {**ENV, "COS_BUCKET": "photos-1250000000"})
    assert (options.bucket, options.region) == ("photos-1250000000", "ap-guangzhou")
