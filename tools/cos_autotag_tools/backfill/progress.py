"""The progress bar on stderr (tqdm), or nothing: stdout carries the JSON log lines."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """A bar whose total grows as a separate listing counts the objects (rate and ETA from tqdm)."""

    def __init__(self, enabled: bool, description: str, stream: TextIO | None = None) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            print("cos-autotag backfill: no progress bar (install the backfill extra for tqdm)", file=sys.stderr)
            return
        self._bar = tqdm(
            total=None,
            desc=description,
            unit="obj",
            file=stream or sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def add_total(self, count: int) -> None:
        if self._bar is not None:
            self._bar.total = (self._bar.total or 0) + count
            self._bar.refresh()

    def update(self, count: int = 1, **postfix: Any) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
