"""Dependency layer size, and proof that the function runs on `src/` plus the layer alone.

1. `layers/build.py` (what `make layer` runs) builds the layer into .bench/; its summary gives
   the baseline, everything pip installs for the runtime dependencies, and the layer's sizes.
2. `layer_driver.py` runs the function with only src/ and the layer on the path (`python -I -S`,
   SCF's Python 3.10 when this machine has one) against the emulator in another process, in
   tags and metadata mode: every object labeled once, a redelivery costs no second label.
3. Smallest: the driver runs again with each top-level package of the layer left out in turn
   (and with every *.dist-info left out). Each must break the function; one that does not
   could be stripped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY

from .common import ROOT, SRC, WORK, Figure, child_env, parse_result
from .emulator_proc import EmulatorProcess

SCF_PYTHON = "3.10"
DRIVER = Path(__file__).with_name("layer_driver.py")


def scf_python() -> tuple[str, dict[str, str]]:
    """SCF's Python if installed (on PATH, or through pyenv), else this interpreter."""
    env = child_env()
    exe = shutil.which("python" + SCF_PYTHON)
    candidates: list[dict[str, str]] = [env]
    pyenv = shutil.which("pyenv")
    if exe and pyenv:  # a pyenv shim needs to be told which 3.10.x
        latest = subprocess.run([pyenv, "latest", SCF_PYTHON], capture_output=True, text=True, check=False)
        if latest.returncode == 0 and latest.stdout.strip():
            candidates.append({**env, "PYENV_VERSION": latest.stdout.strip()})
    for candidate in candidates:
        if exe and _version(exe, candidate) == SCF_PYTHON:
            return exe, candidate
    return sys.executable, env


def _version(exe: str, env: dict[str, str]) -> str:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        proc = subprocess.run([exe, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_layer(out: Path) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "layers" / "build.py"), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=900,
        check=False,
    )
    summary: dict[str, Any] = {}
    if proc.returncode == 0:
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc.returncode, summary, (proc.stdout + proc.stderr).strip()


def drive(emu: EmulatorProcess, layer: Path, mode: str, objects: int, python: tuple[str, dict[str, str]]) -> Any:
    """Run the function from src/ + `layer` only; answer the driver's result."""
    from tests.support.images import jpeg

    tag = f"{mode}-{layer.name}-{os.urandom(3).hex()}"
    events = emu.put_many({f"layer/{tag}/{i}.jpg": jpeg(200 + i) for i in range(objects)})
    config = {
        "src": str(SRC),
        "layer": str(layer),
        "port": emu.port,
        "region": REGION,
        "bucket": BUCKET,
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "mode": mode,
        "cases": [{"key": key, "event": event} for key, event in events.items()],
    }
    path = WORK / "layer-driver.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    exe, env = python
    env = {**env, **emu.function_env(AUTOTAG_MODE=mode, AUTOTAG_MIN_CONFIDENCE="10")}
    proc = subprocess.run(
        [exe, "-I", "-S", "-B", str(DRIVER), str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    result = parse_result(proc)
    result["passed"] = not result["problems"] and result["cases"] == objects
    result["stderr"] = proc.stderr.strip()[-500:]
    return result


def without(layer: Path, left_out: set[str], where: Path) -> Path:
    """A view of `layer` without some entries: symlinks to the rest, so nothing is copied."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    for entry in layer.iterdir():
        if entry.name not in left_out:
            (where / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return where


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MB"


def measure() -> Figure:
    WORK.mkdir(exist_ok=True)
    out = WORK / "layer-build"
    code, summary, output = build_layer(out)
    name = "dependency layer size"
    goal = "smallest layer with which the function runs on src/ + the layer alone"
    if code != 0:
        reason = "no package index reachable" if code == 3 else "the build failed"
        return Figure(
            name=name,
            value="not built",
            baseline="-",
            ratio="-",
            goal=goal,
            met=None if code == 3 else False,
            notes=[f"`layers/build.py` exited {code} ({reason}): {output.splitlines()[-1] if output else ''}"],
            miss="" if code == 3 else f"the layer build failed (exit {code}); see `python layers/build.py`.",
            raw={"build_exit": code, "build_output": output[-3000:]},
        )
    layer = out / "layer"
    installed, unzipped, zipped = (int(summary[k]) for k in ("pip_installed_bytes", "unzipped_bytes", "zipped_bytes"))
    python = scf_python()
    # __pycache__ holds the CPython 3.10 bytecode the build ships on purpose: the function runs
    # without it, but compiles every module on every cold start (the SCF cold-start figure).
    entries = sorted(p.name for p in layer.iterdir() if not p.name.endswith(".dist-info") and p.name != "__pycache__")
    dist_infos = {p.name for p in layer.iterdir() if p.name.endswith(".dist-info")}
    # What the build keeps of a *.dist-info is the licence texts: terms, not code, never a candidate.
    licences_only = all(
        "licenses" in f.relative_to(layer / d).parts or f.name.upper().startswith(("LICEN", "COPYING", "NOTICE"))
        for d in dist_infos
        for f in (layer / d).rglob("*")
        if f.is_file()
    )
    probe_entries = entries if licences_only else [*entries, "*.dist-info"]
    with EmulatorProcess() as emu:
        runs = {mode: drive(emu, layer, mode, 3, python) for mode in ("tags", "metadata")}
        removable: list[str] = []
        probes: dict[str, Any] = {}
        for entry in probe_entries:
            left_out = dist_infos if entry == "*.dist-info" else {entry}
            view = without(layer, left_out, WORK / "layer-probe" / "layer")
            probe = drive(emu, view, "tags", 1, python)
            probes[entry] = probe["problems"][:1] if not probe["passed"] else "passed"
            # A function that warns at import without a package (requests without charset_normalizer)
            # does not run cleanly: that package stays.
            if probe["passed"] and "Warning" not in probe["stderr"]:
                size = sum(tree_size(layer / name) for name in left_out)
                removable.append(f"{entry} ({_mb(size)})")
            elif probe["passed"]:
                probes[entry] = "ran, but warned at import: " + probe["stderr"].strip().splitlines()[-1][:200]
        shutil.rmtree(WORK / "layer-probe", ignore_errors=True)
    version = runs["tags"]["python"]
    passed = all(run["passed"] for run in runs.values())
    met = passed and not removable
    figure = Figure(
        name="dependency layer size",
        value=f"{_mb(unzipped)} unzipped, {_mb(zipped)} zipped; function {'passes' if passed else 'FAILS'}",
        baseline=f"{_mb(installed)} (everything pip installs)",
        ratio=f"{unzipped / installed:.2f}×",
        goal=goal,
        met=met,
        raw={
            "summary": {k: v for k, v in summary.items() if k not in ("removed", "import_check")},
            "python": version,
            "runs": runs,
            "leave_one_out": probes,
            "removable": removable,
        },
    )
    figure.notes.append(
        f"`layers/build.py` for SCF's Python {SCF_PYTHON} (manylinux wheels); the function ran on Python {version} "
        f"with `-I -S` and only src/ and the layer on the path, against the emulator in another process: "
        + ", ".join(
            f"{mode} mode {'passed' if run['passed'] else 'failed: ' + '; '.join(run['problems'])}"
            for mode, run in runs.items()
        )
        + " (3 objects each labeled, each redelivery a duplicate)"
    )
    figure.notes.append(
        f"left out one at a time, each of {', '.join(probe_entries)}: "
        + (
            "every one broke the function or made it warn at import"
            if not removable
            else f"the function still ran without {removable}"
        )
        + ("; the *.dist-info folders hold only licence texts" if licences_only else "")
    )
    if not version.startswith(SCF_PYTHON + "."):
        figure.notes.append(
            f"no Python {SCF_PYTHON} on this machine: run on {version}, where the layer's cp310 extension modules "
            "do not load (their pure-Python fallbacks do) and 3.10-only requirements cannot be told from spares"
        )
    if not met:
        if not passed:
            figure.miss = "the function did not run from src/ + the layer: " + "; ".join(
                p for run in runs.values() for p in run["problems"]
            )
        else:
            figure.miss = (
                f"not the smallest: the function still ran without {'; '.join(removable)}. Stripping that in "
                "`layers/build.py` would close it, at the cost named there (a *.dist-info holds a package's "
                "licence and version metadata; without charset_normalizer, requests decodes bodies that name no "
                "charset as UTF-8)."
            )
    return figure
