"""Real demo photos that ship with the package (sources and licences in SOURCES.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def _folder() -> Path:
    folder = resources.files(__package__)
    if not isinstance(folder, Path):
        # Only a zipped install gets here; the photos need to be real files for the emulator.
        raise RuntimeError(f"{__package__} is not installed as a directory; cannot list photo files")
    return folder


def list_photos() -> list[Path]:
    """Paths of every demo photo, sorted by name."""
    return sorted(p for p in _folder().iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def photo_path(name: str) -> Path:
    """The demo photo called `name` (e.g. "coffee.png"); `FileNotFoundError` lists the choices."""
    for path in list_photos():
        if path.name == name:
            return path
    choices = ", ".join(p.name for p in list_photos())
    raise FileNotFoundError(f"no demo photo named {name!r}; available: {choices}")
