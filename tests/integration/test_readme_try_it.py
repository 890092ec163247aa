"""The README's "Try it yourself" section, run command for command, so that it cannot drift.

Every line of the section's ```sh blocks runs in order, in a scratch folder that sees the
checkout's `tools/` and the virtualenv running this test as `.venv` (which is `.venv` itself
after `make test`). The `cos-autotag local` line runs in the background on a free port (the
README's port is replaced everywhere) and is stopped at the end; `make demo` runs the recipe
the Makefile gives it; `export` lines set the environment of the lines after them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_gallery import wait_for
from tests.integration.test_local_command import LocalProcess, clean_env
from tests.support.browser import headless_chromium
from tests.support.constants import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
README_PORT = "9100"
README_GALLERY_PORT = "9200"


def try_it_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Try it yourself\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, 'the README has no "## Try it yourself" section'
    blocks = re.findall(r"^```sh\n(.*?)^```", match.group(1), re.S | re.M)
    commands = [line.strip() for block in blocks for line in block.splitlines()]
    return [c for c in commands if c and not c.startswith("#")]


def test_the_section_starts_from_make_demo_and_uses_the_venv() -> None:
    commands = try_it_commands()
    assert commands[0] == "make demo"
    assert any(c.startswith(".venv/bin/cos-autotag local ") for c in commands)
    assert not any(c.startswith("cos-autotag ") for c in commands)  # the bare command is not on PATH


def test_the_try_it_section_runs_as_written(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    (tmp_path / ".venv").symlink_to(venv)
    port, gallery_port = str(free_port()), str(free_port())
    gallery: subprocess.Popen[str] | None = None
    env = {**clean_env(), "HOME": str(tmp_path)}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    local: LocalProcess | None = None
    try:
        for command in try_it_commands():
            command = command.replace(README_PORT, port).replace(README_GALLERY_PORT, gallery_port)
            if command == "make demo":
                recipe = re.search(r"^demo:.*\n\t(.+)$", makefile, re.M)
                assert recipe and recipe.group(1) == "$(BIN)/cos-autotag demo", "update this test with the Makefile"
                command = ".venv/bin/cos-autotag demo"
            if command.startswith(".venv/bin/cos-autotag local "):
                args = shlex.split(command)[2:]
                # The README's own program, through the .venv link, as a user's shell would run it.
                local = LocalProcess(args, env=env, cwd=tmp_path, program=[str(tmp_path / ".venv/bin/cos-autotag")])
                local.wait_for("Press Ctrl-C to stop.")
                continue
            if command.startswith((".venv/bin/cos-autotag show ", ".venv/bin/cos-autotag find ")):
                assert local is not None
                local.wait_for("  photos/coffee.png  labeled")  # the trigger labels in the background
            if command.startswith(".venv/bin/cos-autotag gallery "):
                gallery = subprocess.Popen(
                    ["bash", "-c", command], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
                )
                _check_gallery_in_a_browser(gallery, gallery_port)
                continue
            if command.startswith("export "):
                env.update(dict(item.split("=", 1) for item in shlex.split(command)[1:]))
                continue
            done = subprocess.run(
                ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            if command.startswith(".venv/bin/cos-autotag show "):
                assert "意式浓缩咖啡" in done.stdout and "marker: v2:" in done.stdout, done.stdout
            if command.startswith(".venv/bin/cos-autotag find "):
                assert "photos/coffee.png" in done.stdout, done.stdout
            if command.startswith(".venv/bin/cos-autotag invoke"):
                assert re.search(r'"(labeled|duplicates)": 1', done.stdout), done.stdout
        assert local is not None, "the section never starts `cos-autotag local`"
        # What the README says the first terminal prints, in Chinese.
        assert "意式浓缩咖啡 96" in local.wait_for("  photos/coffee.png  labeled")
        assert "宫殿" in local.wait_for("  photos/china.jpg  labeled")
        local.wait_for("  photos/flower.jpg  ")
    finally:
        if gallery is not None:
            gallery.send_signal(signal.SIGINT)
            gallery.wait(timeout=30)
        if local is not None:
            local.proc.send_signal(signal.SIGINT)
            assert local.stop() == 0
    assert os.path.exists(tmp_path / "put.json")


def _check_gallery_in_a_browser(gallery: subprocess.Popen[str], port: str) -> None:
    """The page the README's gallery command serves, loaded in headless Chromium: photo and labels."""
    assert gallery.stdout is not None
    for line in gallery.stdout:
        if line.startswith("Gallery: "):
            url = line.split()[1]
            break
    else:
        raise AssertionError(f"the gallery stopped before serving (exit {gallery.wait()})")
    assert url.rstrip("/").endswith(f":{port}"), url
    with headless_chromium() as driver:
        driver.get(url)
        wait_for(driver, "return document.body.dataset.ready === 'true'")
        grid = driver.find_element("id", "grid").text
    assert "coffee.png" in grid and "意式浓缩咖啡" in grid, grid
