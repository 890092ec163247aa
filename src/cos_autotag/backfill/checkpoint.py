"""The --resume checkpoint: an append-only JSON Lines file, so a crash loses at most a line.

Lines, in order of writing:
    {"kind": "start", "version": 1, "bucket": ..., "region": ..., "prefix": ..., "mode": ..., "via": ...}
    {"kind": "done", "key": ..., "outcome": ...}             one per finished object
    {"kind": "failed", "key": ..., "size": ..., "reason": ...} a failure, retried on the next run
    {"kind": "mark", "after": KEY}                            every listed key up to KEY is finished
    {"kind": "end"}                                           the listing was exhausted

The listing is in key order, so a resumed run lists again after the last mark and skips the
keys finished after it (objects finish out of order across threads). Failed keys are retried
first. An object labeled but not yet written here is listed again, and then the marker on
the object makes it cost one read and no detect-label call.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

VERSION = 1
# The scope a checkpoint belongs to: resuming it against anything else would skip wrong keys.
SCOPE_FIELDS = ("bucket", "region", "prefix", "mode", "via")


class CheckpointError(ValueError):
    """The checkpoint file cannot be used for this run (unreadable, or another bucket/prefix)."""


@dataclass
class ResumeState:
    """What an earlier run left: where to list from, and what not to do again."""

    after: str = ""  # list after this key ("" = from the start)
    done: set[str] = field(default_factory=set)  # finished after `after`
    retry: dict[str, int | None] = field(default_factory=dict)  # failed last time: key -> size
    finished: bool = False  # the earlier run listed everything
    lines: int = 0

    def skip(self, key: str) -> bool:
        """True when the listing should not hand this key out again."""
        return key in self.done or key in self.retry


def _after(key: str, mark: str) -> bool:
    # COS lists in UTF-8 byte order, which is code point order for str; compare bytes to be plain.
    return key.encode() > mark.encode()


def load(path: Path, scope: dict[str, str]) -> ResumeState:
    """Read a checkpoint written for `scope`; an absent or empty file is a fresh start."""
    state = ResumeState()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return state
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint {path}: {error}") from error
    lines = [line for line in text.split("\n") if line.strip()]
    last: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError as error:
            # A line cut short by a crash is the last one, or the one before a later run's start.
            if number == len(lines) or lines[number].startswith('{"kind":"start"'):
                continue
            raise CheckpointError(f"{path}:{number}: not a checkpoint line ({error})") from None
        state.lines += 1
        kind = entry.get("kind")
        if kind == "start":
            _check_scope(path, entry, scope)
            state.finished = False  # a later run started on the same file
        elif kind in ("done", "failed") and isinstance(entry.get("key"), str):
            last[entry["key"]] = entry
        elif kind == "mark" and isinstance(entry.get("after"), str):
            state.after = entry["after"]
        elif kind == "end":
            state.finished = True
        else:
            raise CheckpointError(f"{path}:{number}: unknown checkpoint line {line[:200]!r}")
    for key, entry in last.items():
        if entry["kind"] == "failed":
            size = entry.get("size")
            state.retry[key] = size if isinstance(size, int) else None
        elif not state.after or _after(key, state.after):
            state.done.add(key)
    return state


def _check_scope(path: Path, entry: dict[str, Any], scope: dict[str, str]) -> None:
    if entry.get("version") != VERSION:
        raise CheckpointError(f"{path} was written by another checkpoint version ({entry.get('version')!r})")
    for name in SCOPE_FIELDS:
        if entry.get(name, "") != scope.get(name, ""):
            raise CheckpointError(
                f"{path} belongs to another run: its {name} is {entry.get(name, '')!r}, this run's is "
                f"{scope.get(name, '')!r}; use another --resume file or the same options"
            )


class CheckpointWriter:
    """Appends lines; flushes each one to the OS and fsyncs in batches (a kill -9 loses nothing
    the OS has; a power cut loses at most the last batch, which the object markers cover)."""

    def __init__(
        self, path: Path, scope: dict[str, str], *, sync_every: int = 50, sync_interval_s: float = 1.0
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sync_every, self._sync_interval_s = sync_every, sync_interval_s
        self._unsynced = 0
        self._last_sync = time.monotonic()
        try:
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as error:
            raise CheckpointError(f"cannot write the checkpoint {path}: {error}") from error
        self._terminate_partial_line()
        self._write({"kind": "start", "version": VERSION, **{k: scope.get(k, "") for k in SCOPE_FIELDS}}, sync=True)

    def _terminate_partial_line(self) -> None:
        # A line cut short by a crash must not swallow the first line this run appends.
        if self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as reader:
            reader.seek(-1, os.SEEK_END)
            if reader.read(1) != b"\n":
                self._file.write("\n")

    def done(self, key: str, outcome: str) -> None:
        self._write({"kind": "done", "key": key, "outcome": outcome})

    def failed(self, key: str, size: int | None, reason: str) -> None:
        self._write({"kind": "failed", "key": key, "size": size, "reason": reason[:300]})

    def mark(self, after: str) -> None:
        self._write({"kind": "mark", "after": after})

    def end(self) -> None:
        self._write({"kind": "end"}, sync=True)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._sync()
                self._file.close()

    def _write(self, entry: dict[str, Any], sync: bool = False) -> None:
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()  # in the OS now: survives the process being killed
            self._unsynced += 1
            now = time.monotonic()
            if sync or self._unsynced >= self._sync_every or now - self._last_sync >= self._sync_interval_s:
                self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._unsynced = 0
        self._last_sync = time.monotonic()


class Watermark:
    """Tracks which listed keys are finished, in listing order, to find the next mark."""

    def __init__(self) -> None:
        self._pending: OrderedDict[str, bool] = OrderedDict()

    def listed(self, key: str) -> None:
        self._pending[key] = False

    def finished(self, key: str) -> str | None:
        """Mark `key` finished; return the new mark if the finished prefix grew."""
        if key not in self._pending:
            return None
        self._pending[key] = True
        mark = None
        while self._pending:
            first, is_done = next(iter(self._pending.items()))
            if not is_done:
                break
            self._pending.popitem(last=False)
            mark = first
        return mark

    @property
    def in_flight(self) -> int:
        return len(self._pending)
