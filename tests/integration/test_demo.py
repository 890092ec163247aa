"""The README's first command, end to end: real photos, the offline engine, the real handler."""

import os
import re

import pytest

from cos_autotag_tools.demo import run_demo

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["tags", "metadata"])
def test_demo_labels_every_photo_once_and_redeliveries_cost_one_read(mode, capsys, monkeypatch):
    monkeypatch.delenv("AUTOTAG_MIN_CONFIDENCE", raising=False)
    monkeypatch.setenv("AUTOTAG_MODE", "caller's value")
    assert run_demo(["--mode", mode]) == 0
    assert os.environ["AUTOTAG_MODE"] == "caller's value"  # the demo restores the environment
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("photos/", "notes/"))}
    assert len(rows) == 6
    coffee = rows["photos/coffee.png"]
    # Chinese labels, as Cloud Infinite names them: a UTF-8 tag key, or percent-encoded metadata.
    assert ("autotag:意式浓缩咖啡=96" if mode == "tags" else "意式浓缩咖啡:96") in coffee
    first_read = "get-tags" if mode == "tags" else "head"
    for key, row in rows.items():
        if key.startswith("photos/"):
            new = "4 \\(get-tags detect get-tags put-tags\\)" if mode == "tags" else "4 \\(head acl detect copy\\)"
            assert re.search(rf"{new}\s+1 \({first_read}\)", row), row
        else:
            assert re.search(r"readme\.txt\s+0\s+0\s", row), row
    assert "5 detect-label calls" in out and "0 failed invocations" in out
    if mode == "tags":
        assert "owner=demo-user" in rows["photos/chelsea.png"]
    else:
        assert "album=summer" in rows["photos/chelsea.png"]
    assert "Try it yourself: `.venv/bin/cos-autotag local`" in out
    assert "`.venv/bin/cos-autotag gallery --demo`" in out


def test_demo_in_english_on_request(capsys, monkeypatch):
    monkeypatch.delenv("AUTOTAG_MIN_CONFIDENCE", raising=False)
    assert run_demo(["--label-language", "en"]) == 0
    coffee = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("photos/coffee.png"))
    assert "autotag:espresso=96" in coffee
