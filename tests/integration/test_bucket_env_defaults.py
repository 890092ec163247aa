"""The bucket-wide commands take --bucket and --region from COS_BUCKET and COS_REGION (the
deploy's .env names), through the CLI entry point; a flag wins; with neither, a usage error
names both the flag and the variable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cos_autotag_tools.cli import main
from cos_autotag_tools.emulator import Emulator
from tests.support.constants import APPID, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import seed_object
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration

BUCKET = f"deploybucket-{APPID}"
COMMANDS = (["show", "photo.jpg"], ["find", "猫"], ["gallery"], ["backfill", "--dry-run"], ["untag", "--dry-run"])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials of a key, and neither variable: each test sets what it needs."""
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", SECRET_KEY)
    monkeypatch.delenv("TENCENTCLOUD_SESSIONTOKEN", raising=False)
    monkeypatch.delenv("COS_BUCKET", raising=False)
    monkeypatch.delenv("COS_REGION", raising=False)
    # Nothing listens here: a usage error must come before any call.
    monkeypatch.setenv("AUTOTAG_COS_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def emu(env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=APPID) as emulator:
        emulator.create_bucket(BUCKET, REGION)
        seed_object(
            emulator,
            BUCKET,
            "photo.jpg",
            image_bytes(seed=3),
            content_type="image/jpeg",
            tags={"owner": "alice", "autotag": "v1:env", "autotag:猫": "88"},
        )
        monkeypatch.setenv("AUTOTAG_COS_ENDPOINT", emulator.endpoint)
        yield emulator


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_without_flag_or_variable_the_error_names_both(
    argv: list[str], env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--no-progress"] if argv[0] in ("find", "gallery") else argv) == 2
    err = capsys.readouterr().err
    assert f"cos-autotag {argv[0]}: no bucket and region given" in err
    for name in ("--bucket", "--region", "COS_BUCKET", "COS_REGION"):
        assert name in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_a_bad_variable_is_named_as_the_source(
    argv: list[str], env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COS_BUCKET", "examplebucket")  # no -<appid>
    monkeypatch.setenv("COS_REGION", REGION)
    assert main(argv) == 2
    assert "COS_BUCKET 'examplebucket' is not a <name>-<appid> bucket name" in capsys.readouterr().err
    monkeypatch.setenv("COS_BUCKET", BUCKET)
    monkeypatch.setenv("COS_REGION", "guangzhou")
    assert main(argv) == 2
    assert "COS_REGION 'guangzhou' is not a region name" in capsys.readouterr().err


def test_show_and_find_read_the_bucket_from_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COS_BUCKET", BUCKET)
    monkeypatch.setenv("COS_REGION", "gz")  # short codes work here as with --region
    assert main(["show", "photo.jpg"]) == 0
    assert "猫" in capsys.readouterr().out
    assert main(["find", "猫", "--no-progress"]) == 0
    assert "photo.jpg" in capsys.readouterr().out


def test_a_flag_wins_over_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COS_BUCKET", f"other-{APPID}")
    monkeypatch.setenv("COS_REGION", "ap-shanghai")
    assert main(["show", "photo.jpg", "--bucket", BUCKET, "--region", REGION]) == 0
    assert "猫" in capsys.readouterr().out
    # Only the bucket given: the region still comes from COS_REGION, and the emulator's answer says so.
    assert main(["show", "photo.jpg", "--bucket", BUCKET]) == 1
    assert "NoSuchBucket" in capsys.readouterr().err


def test_backfill_and_untag_run_on_the_environments_bucket(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COS_BUCKET", BUCKET)
    monkeypatch.setenv("COS_REGION", REGION)
    assert main(["backfill", "--dry-run", "--no-progress"]) == 0
    assert main(["untag", "--no-progress"]) == 0
    state = emu.get_object_state(BUCKET, "photo.jpg")
    assert state is not None and dict(state.tags) == {"owner": "alice"}
    capsys.readouterr()


def test_gallery_demo_ignores_the_environment(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """--demo brings its own bucket: a loaded .env must not make it refuse."""
    from cos_autotag_tools.gallery import _check_demo, _parser

    monkeypatch.setenv("COS_BUCKET", BUCKET)
    monkeypatch.setenv("COS_REGION", REGION)
    args = _parser().parse_args(["--demo"])
    _check_demo(args)  # raises FlagError when it refuses
    assert args.demo
