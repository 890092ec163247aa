"""The --resume checkpoint: an append-only JSON Lines file, so a crash loses at most a line.

Lines, in order of writing:
    {"kind": "start", "version": 2, "bucket": ..., "region": ..., "prefix": ..., "mode": ..., "via": ...}
    {"kind": "answer", "key": ..., "etag": ..., "response": {...}}  a detect-label answer, before its tags
    {"kind": "done", "key": ..., "outcome": ...}             one per finished object
    {"kind": "failed", "key": ..., "size": ..., "reason": ...} a failure, retried on the next run
    {"kind": "mark", "after": KEY}                            every listed key up to KEY is finished
    {"kind": "end"}                                           the listing was exhausted

The listing is in key order, so a resumed run lists again after the last mark and skips the
keys finished after it (objects finish out of order across threads). Failed keys are retried
first. An object labeled but not yet written here is listed again, and then the marker on
the object makes it cost one read and no detect-label call.

An answer line is fsynced before the pipeline may write the object's tags, so an object whose
answer reached a run that then crashed is not paid for again: the resumed run reuses the answer
if the object's ETag in its listing is still the one the answer was given for. Only answers of
keys not finished are kept; the file is compacted (rewritten with only the lines a resume
needs) when a run starts on it, when it has doubled since, and when the listing is exhausted.

One run at a time: a writer holds an exclusive lock (`CheckpointLock`) on `<checkpoint>.lock`
from before it reads the file until it is closed, and a second run on the same checkpoint is
refused, naming the holder. The lock is on a file of its own because compaction replaces the
checkpoint by a rename: a lock on the checkpoint itself would stay on the old file, and a run
starting after a compaction would lock the new one beside it. The lock file is never renamed
or deleted for the same reason (a run waiting on a deleted lock file and a run creating a new
one would both hold "the" lock). A checkpoint path that is a symbolic link is refused, not
resolved: the rename would replace the link, not the file it points at, and two links to one
file would have two lock files. Every open of the checkpoint and of its temporary files refuses
to follow a link (O_NOFOLLOW), so a link planted there is never written through.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from .listing import ListedObject

VERSION = 2
# Version 1 had no answer lines; its lines mean the same, so its checkpoints resume as they are.
READABLE_VERSIONS = (1, 2)
# The scope a checkpoint belongs to: resuming it against anything else would skip wrong keys.
SCOPE_FIELDS = ("bucket", "region", "prefix", "mode", "via")
# A running checkpoint is compacted once it is this big and twice its size after the last compaction:
# a few rewrites over a run, however many objects it labels.
COMPACT_MIN_BYTES = 8 * 1024 * 1024


class CheckpointError(ValueError):
    """The checkpoint file cannot be used for this run (unreadable, or another bucket/prefix)."""


class CheckpointBusy(CheckpointError):
    """Another run holds the checkpoint's lock."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


LOCK_SUFFIX = ".lock"
TEMPORARY_SUFFIX = ".compacting"
# Neither a link at the checkpoint path nor one planted at its temporary file is ever followed.
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def _is_link_error(error: OSError) -> bool:
    # O_NOFOLLOW on a symbolic link: ELOOP on Linux and macOS, EMLINK on FreeBSD.
    return error.errno in (errno.ELOOP, errno.EMLINK)


def _symlink_error(path: Path) -> CheckpointError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return CheckpointError(
        f"the checkpoint {path} is a symbolic link{target}: refused, since rewriting it would replace "
        "the link rather than the file; pass the file itself to --resume"
    )


def _open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError as error:
        if _is_link_error(error):
            raise _symlink_error(path) from None
        raise


def _open_append(path: Path) -> IO[str]:
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8")


def _open_read(path: Path) -> BinaryIO:
    return os.fdopen(_open_nofollow(path, os.O_RDONLY), "rb")


class CheckpointLock:
    """An exclusive lock on a checkpoint for one run, held until `release` (or the process ends:
    the kernel drops a flock with its holder, so a killed run never leaves a stale lock).

    The lock file records the holder's PID, host and start time, for the message a second run gets.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_file = lock_path(path)
        if path.is_symlink():
            raise _symlink_error(path)
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            fd = _open_nofollow(self.lock_file, os.O_RDWR | os.O_CREAT)
        except CheckpointError:
            raise CheckpointError(
                f"the checkpoint's lock file {self.lock_file} is a symbolic link: refused; remove it and run again"
            ) from None
        except OSError as error:
            raise CheckpointError(f"cannot lock the checkpoint {path}: {error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(path, holder) from None
            raise CheckpointError(f"cannot lock the checkpoint {path}: {error}") from error
        self._fd: int | None = fd
        holder_text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_text.encode() + b"\n", 0)
        except OSError:
            pass  # only the message a second run gets is poorer; the lock is held all the same

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock; the lock file stays (see the module's docstring)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with suppress(OSError):
            os.ftruncate(fd, 0)  # no PID of a finished run left behind to mislead anyone
        os.close(fd)  # closing the only descriptor of the open file releases the flock

    def __enter__(self) -> CheckpointLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _busy(path: Path, holder: Mapping[str, Any]) -> CheckpointBusy:
    pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
    host = str(holder.get("host") or "")
    since = holder.get("since")
    who = f"PID {pid}" if pid is not None else "a process that is just starting (PID not yet recorded)"
    if host and host != socket.gethostname():
        who += f" on host {host}"
    if isinstance(since, (int, float)):
        who += f", running since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"
    stop = f"kill {pid}" if pid is not None else "kill it"
    return CheckpointBusy(
        f"the checkpoint {path} is in use by another backfill run ({who}): refused, since two runs on one "
        f"checkpoint would pay for objects twice and lose its record. Wait for that run to finish, or stop it "
        f"({stop}, or Ctrl-C in its terminal: it records what it finished) and run this again to continue "
        "from the checkpoint; or give this run another --resume file",
        pid,
    )


@dataclass(frozen=True)
class Answer:
    """A detect-label answer an earlier run paid for and had no time to write as tags."""

    etag: str  # the object's ETag in the listing of the run that asked
    response: Any  # the response, as the gateway returned it (JSON)


@dataclass
class ResumeState:
    """What an earlier run left: where to list from, and what not to do again."""

    after: str = ""  # list after this key ("" = from the start)
    done: set[str] = field(default_factory=set)  # finished after `after`
    retry: dict[str, int | None] = field(default_factory=dict)  # failed last time: key -> size
    finished: bool = False  # the earlier run listed everything
    lines: int = 0
    # Answered but not finished (and after `after`): reusable while the object's ETag is unchanged.
    answers: dict[str, Answer] = field(default_factory=dict)
    # The last done/failed line of each key in `done` or `retry`: what a compacted file keeps.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        with _open_read(path) as reader:
            text = reader.read().decode("utf-8")
    except FileNotFoundError:
        return state
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path} is not a checkpoint (not UTF-8 text: {error})") from None
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint {path}: {error}") from error
    lines = [line for line in text.split("\n") if line.strip()]
    last: dict[str, dict[str, Any]] = {}
    answers: dict[str, Answer] = {}
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
        elif kind == "answer" and isinstance(entry.get("key"), str) and isinstance(entry.get("etag"), str):
            answers[entry["key"]] = Answer(entry["etag"], entry.get("response"))
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
            state.records[key] = entry
        elif not state.after or _after(key, state.after):
            state.done.add(key)
            state.records[key] = entry
    # An answer is worth keeping only for a key the listing will hand out again: not finished (a
    # failed key is retried from here, with no fresh ETag to check the answer against) and after the mark.
    state.answers = {
        key: answer
        for key, answer in answers.items()
        if key not in last and (not state.after or _after(key, state.after))
    }
    return state


def compacted(state: ResumeState, scope: Mapping[str, str]) -> list[dict[str, Any]]:
    """The fewest lines that `load` reads back as `state`."""
    entries: list[dict[str, Any]] = [_start_entry(scope)]
    if state.after:
        entries.append({"kind": "mark", "after": state.after})
    entries.extend(state.records.values())
    entries.extend(
        {"kind": "answer", "key": key, "etag": answer.etag, "response": answer.response}
        for key, answer in state.answers.items()
    )
    if state.finished:
        entries.append({"kind": "end"})
    return entries


def _start_entry(scope: Mapping[str, str]) -> dict[str, Any]:
    return {"kind": "start", "version": VERSION, **{k: scope.get(k, "") for k in SCOPE_FIELDS}}


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"


def _check_scope(path: Path, entry: dict[str, Any], scope: dict[str, str]) -> None:
    if entry.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} was written by another checkpoint version ({entry.get('version')!r})")
    for name in SCOPE_FIELDS:
        if entry.get(name, "") != scope.get(name, ""):
            raise CheckpointError(
                f"{path} belongs to another run: its {name} is {entry.get(name, '')!r}, this run's is "
                f"{scope.get(name, '')!r}; use another --resume file or the same options"
            )


class CheckpointWriter:
    """Appends lines; flushes each one to the OS and fsyncs in batches (a kill -9 loses nothing
    the OS has; a power cut loses at most the last batch, which the object markers cover).
    Answer lines are fsynced at once: the tag write waits for them.

    The writer holds the checkpoint's lock until `close`: pass the `CheckpointLock` taken before
    the checkpoint was `load`ed (so that what was read is still the file's content), or let the
    writer take it. Raises CheckpointBusy when another run holds it."""

    def __init__(
        self,
        path: Path,
        scope: Mapping[str, str],
        *,
        lock: CheckpointLock | None = None,
        sync_every: int = 50,
        sync_interval_s: float = 1.0,
        compact_min_bytes: int = COMPACT_MIN_BYTES,
    ) -> None:
        self.path = path
        self.scope = {k: scope.get(k, "") for k in SCOPE_FIELDS}
        self._lock = threading.Lock()
        self._sync_every, self._sync_interval_s = sync_every, sync_interval_s
        self._compact_min_bytes = compact_min_bytes
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._run_lock = lock if lock is not None else CheckpointLock(path)
        if not self._run_lock.held or self._run_lock.path != path:
            raise ValueError(f"the lock passed is not held for {path}")
        try:
            try:
                if path.exists() and path.stat().st_size > 0:
                    with suppress(OSError):  # only saves space: appending to the file as it is works too
                        self._compact_file()
                self._file: IO[str] = _open_append(path)
                self._size = os.fstat(self._file.fileno()).st_size
            except OSError as error:
                raise CheckpointError(f"cannot write the checkpoint {path}: {error}") from error
            self._compact_at = max(self._compact_min_bytes, 2 * self._size)
            self._terminate_partial_line()
            self._write(_start_entry(self.scope), sync=True)
        except BaseException:
            self._run_lock.release()
            raise

    def _terminate_partial_line(self) -> None:
        # A line cut short by a crash must not swallow the first line this run appends.
        if self._size == 0:
            return
        with _open_read(self.path) as reader:
            reader.seek(-1, os.SEEK_END)
            if reader.read(1) != b"\n":
                self._file.write("\n")
                self._size += 1

    def answer(self, key: str, etag: str, response: Any) -> None:
        """Keep a detect-label answer: on disk (flushed and fsynced) when this returns.

        Raises TypeError/ValueError for a response JSON cannot hold, OSError if it cannot be written."""
        self._write({"kind": "answer", "key": key, "etag": etag, "response": response}, sync=True)

    def done(self, key: str, outcome: str) -> None:
        self._write({"kind": "done", "key": key, "outcome": outcome})

    def failed(self, key: str, size: int | None, reason: str) -> None:
        self._write({"kind": "failed", "key": key, "size": size, "reason": reason[:300]})

    def mark(self, after: str) -> None:
        self._write({"kind": "mark", "after": after})

    def end(self) -> None:
        self._write({"kind": "end"}, sync=True)
        with self._lock:
            # Every listed key is finished: no answer is needed any more.
            self._compact()

    def close(self) -> None:
        """Sync, close and release the lock (the next run may start on the file then)."""
        with self._lock:
            try:
                if not self._file.closed:
                    self._sync()
                    self._file.close()
            finally:
                self._run_lock.release()

    def _write(self, entry: dict[str, Any], sync: bool = False) -> None:
        line = _line(entry)
        with self._lock:
            self._file.write(line)
            self._file.flush()  # in the OS now: survives the process being killed
            self._size += len(line.encode("utf-8"))
            self._unsynced += 1
            now = time.monotonic()
            if sync or self._unsynced >= self._sync_every or now - self._last_sync >= self._sync_interval_s:
                self._sync()
            if self._size >= self._compact_at:
                self._compact()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._unsynced = 0
        self._last_sync = time.monotonic()

    # --- compaction ---------------------------------------------------------------------------

    def _compact(self) -> None:
        """Rewrite the file with only what a resume needs (the lock is held)."""
        try:
            self._sync()
            self._compact_file()
            self._file.close()
            self._file = _open_append(self.path)
            self._size = os.fstat(self._file.fileno()).st_size
        except (OSError, CheckpointError):
            # Compaction only saves space: if it cannot be done, keep appending to the file as it is.
            if self._file.closed:
                self._file = _open_append(self.path)
        self._compact_at = max(self._compact_min_bytes, 2 * self._size)

    def _compact_file(self) -> None:
        """Replace the file, atomically, by the compacted lines of what `load` reads from it.

        The new content goes to a temporary file created afresh beside it (O_EXCL|O_NOFOLLOW: a
        link or file already there is never written through), is fsynced, then renamed over the
        checkpoint, and the directory is fsynced so that the rename survives a power cut."""
        try:
            state = load(self.path, self.scope)
        except CheckpointError:
            return  # not ours to rewrite (another run's, or damaged): `load` reports it where it matters
        text = "".join(_line(entry) for entry in compacted(state, self.scope))
        current = os.lstat(self.path)
        if len(text.encode("utf-8")) >= current.st_size:
            return
        temporary = self.path.with_name(self.path.name + TEMPORARY_SUFFIX)
        fd = self._create_temporary(temporary, current.st_mode & 0o777)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError:
            with suppress(OSError):
                temporary.unlink()  # ours: created by this call
            raise
        with suppress(OSError):
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    @staticmethod
    def _create_temporary(temporary: Path, mode: int) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        try:
            fd = os.open(temporary, flags, mode)
        except FileExistsError:
            # Left by a run that died while compacting, or planted: no run uses it (this one holds
            # the lock). Unlinking removes the entry itself, never what a link there points at.
            temporary.unlink()
            fd = os.open(temporary, flags, mode)
        with suppress(OSError):
            os.fchmod(fd, mode)  # the checkpoint's own permissions, whatever the umask
        return fd


class AnswerCache:
    """The pipeline's DetectCache, kept in the checkpoint (a run with --resume, not a dry run).

    `store` appends an answer line and returns once it is on disk, so the tag write that follows
    starts only after that; `lookup` hands back an answer an earlier run kept, if this run's
    listing gives the object the ETag the answer was given for (a changed object is labeled afresh).
    Answers of earlier runs stay in memory until their key is finished.
    """

    def __init__(self, writer: CheckpointWriter, answers: Mapping[str, Answer], log: Any) -> None:
        self._writer, self._log = writer, log
        self._lock = threading.Lock()
        self._answers = dict(answers)
        self._etags: dict[str, str] = {}  # key -> ETag in this run's listing, while it is in progress
        self.reused = 0

    def begin(self, obj: ListedObject) -> None:
        """`obj` is about to go through the pipeline."""
        if obj.etag:
            with self._lock:
                self._etags[obj.key] = obj.etag

    def finished(self, key: str) -> None:
        with self._lock:
            self._etags.pop(key, None)
            self._answers.pop(key, None)

    def lookup(self, bucket: str, key: str) -> Any | None:
        with self._lock:
            answer = self._answers.pop(key, None)
            etag = self._etags.get(key, "")
            if answer is not None and etag and answer.etag == etag:
                self.reused += 1
                return answer.response
        if answer is not None:
            self._log.info(
                "the object changed since its detect-label answer was kept: labeling it afresh",
                bucket=bucket,
                key=key,
            )
        return None

    def store(self, bucket: str, key: str, response: Any) -> None:
        with self._lock:
            etag = self._etags.get(key, "")
        if not etag:
            return  # a key retried from the checkpoint: no listed ETag to check the answer against later
        try:
            self._writer.answer(key, etag, response)
        except (OSError, TypeError, ValueError) as error:
            # The labels are still written; only a crash before that would pay for them again.
            self._log.warning(
                "could not keep the detect-label answer in the checkpoint",
                bucket=bucket,
                key=key,
                error=str(error),
            )


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
