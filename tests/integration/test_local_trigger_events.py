"""`cos-autotag local` delivers only what the deployed trigger would: the events and filters of
serverless.yml's COS triggers (Put, Post, CompleteMultipartUpload), overridable by flags; and it
plays the contested COS rules chosen by its flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cos_autotag_tools.emulator.cli import serverless_trigger
from tests.integration.test_local_command import BUCKET, REGION, SECRET_ID, SECRET_KEY, LocalProcess, client
from tests.support.images import jpeg

pytestmark = pytest.mark.integration
BASE = ["--bucket", f"{BUCKET}:{REGION}", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY, "--engine", "digest"]


def run(args: list[str]) -> LocalProcess:
    proc = LocalProcess([*BASE, *args])
    proc.wait_for("Press Ctrl-C to stop.")
    return proc


def test_a_copy_is_not_delivered_as_serverless_yml_subscribes_only_uploads() -> None:
    proc = run(["--tag-rule", "strict", "--unbound-answer", "404"])
    try:
        assert "cos:ObjectCreated:Put, cos:ObjectCreated:Post, cos:ObjectCreated:CompleteMultipartUpload" in (
            proc.wait_for("trigger: ")
        )
        rules = proc.wait_for("COS rules: ")
        assert "tags strict" in rules and "unbound detect-label 404" in rules
        sdk = client(proc.port)
        sdk.put_object(Bucket=BUCKET, Key="a.jpg", Body=jpeg(1), ContentType="image/jpeg")
        proc.wait_for("  a.jpg  ")
        source = {"Bucket": BUCKET, "Key": "a.jpg", "Region": REGION}
        sdk.copy_object(Bucket=BUCKET, Key="b.jpg", CopySource=source)
        sdk.put_object(Bucket=BUCKET, Key="c.jpg", Body=jpeg(2), ContentType="image/jpeg")
        proc.wait_for("  c.jpg  ")  # delivered after the copy: had the copy been delivered, it would show first
        assert not any("  b.jpg  " in line for line in proc.lines), proc.lines
    finally:
        assert proc.stop() == 0


def test_flags_override_the_events_and_filters() -> None:
    proc = run(["--trigger-events", "cos:ObjectCreated:*", "--trigger-prefix", "in/"])
    try:
        assert "cos:ObjectCreated:*, prefix 'in/' (from --trigger-events)" in proc.wait_for("trigger: ")
        sdk = client(proc.port)
        sdk.put_object(Bucket=BUCKET, Key="out/x.jpg", Body=jpeg(3), ContentType="image/jpeg")
        sdk.put_object(Bucket=BUCKET, Key="in/a.jpg", Body=jpeg(4), ContentType="image/jpeg")
        proc.wait_for("  in/a.jpg  ")
        sdk.copy_object(
            Bucket=BUCKET, Key="in/b.jpg", CopySource={"Bucket": BUCKET, "Key": "in/a.jpg", "Region": REGION}
        )
        proc.wait_for("  in/b.jpg  ")  # Copy is delivered under *
        assert not any("out/x.jpg" in line for line in proc.lines)
    finally:
        assert proc.stop() == 0


def test_serverless_yml_parsing(tmp_path: Path) -> None:
    spec = serverless_trigger(None, {"COS_TRIGGER_PREFIX": "uploads/"})
    assert spec.events == (
        "cos:ObjectCreated:Put",
        "cos:ObjectCreated:Post",
        "cos:ObjectCreated:CompleteMultipartUpload",
    )
    assert (spec.prefix, spec.suffix) == ("uploads/", "")
    yml = tmp_path / "serverless.yml"
    yml.write_text(
        "component: scf\ninputs:\n  events:\n    - cos:\n        parameters:\n          events: 'cos:ObjectCreated:*'\n"
        "          filter: {prefix: a/, suffix: .jpg}\n          enable: true\n"
        "    - cos:\n        parameters:\n          events: 'cos:ObjectCreated:Copy'\n          enable: false\n"
    )
    spec = serverless_trigger(yml, {})
    assert (spec.events, spec.prefix, spec.suffix) == (("cos:ObjectCreated:*",), "a/", ".jpg")
    yml.write_text("component: scf\ninputs:\n  events: []\n")
    with pytest.raises(ValueError, match="subscribes to no COS event"):
        serverless_trigger(yml, {})
