"""layers/build.py loaded as a module (it is a script, not a package): one loader for every test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BUILD_PY = Path(__file__).resolve().parents[2] / "layers" / "build.py"


def load_build_module() -> ModuleType:
    if "layer_build" in sys.modules:
        return sys.modules["layer_build"]
    spec = importlib.util.spec_from_file_location("layer_build", BUILD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layer_build"] = module  # before running it: dataclasses look their module up
    spec.loader.exec_module(module)
    return module
