"""The --resume checkpoint: an SQLite database in WAL mode, so a crash loses no committed row.

Tables:
    meta     version, the run's scope (bucket, region, prefix, mode, via), `after`, `finished`, `runs`
    keys     one row per finished object after the mark: done (with its outcome) or failed (retried
             first on the next run, with its size and reason)
    answers  a detect-label answer, committed before the pipeline may write the object's tags

The listing is in key order, so a resumed run lists again after the mark (`after`: every listed
key up to it is finished) and skips the keys finished after it (objects finish out of order
across threads). Done rows and answers up to the mark are deleted as it advances, so the file
stays as small as what a resume needs. An object labeled but not yet recorded here is listed
again, and the marker on the object makes it cost one read and no detect-label call.

Every row is committed when written: a commit is in the OS's hands at once, so `kill -9` loses
nothing. An answer is also synced (synchronous=FULL) before the tag write, so an object whose
answer reached a run that then crashed is not paid for again: the resumed run reuses the answer
if the object's ETag in its listing is still the one the answer was given for.

One run at a time: a writer holds an exclusive lock (`CheckpointLock`, a flock) on
`<checkpoint>.lock` from before it reads the database until it is closed, and a second run is
refused, naming the holder. The lock is on a file of its own so that it never shares a file with
SQLite's own POSIX locks. A checkpoint path that is a symbolic link is refused, not resolved.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .listing import ListedObject

VERSION = 3  # versions 1 and 2 were JSON Lines files
# The scope a checkpoint belongs to: resuming it against anything else would skip wrong keys.
SCOPE_FIELDS = ("bucket", "region", "prefix", "mode", "via")
SQLITE_HEADER = b"SQLite format 3\x00"
LOCK_SUFFIX = ".lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, state TEXT NOT NULL, outcome TEXT, size INTEGER, reason TEXT);
CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, etag TEXT NOT NULL, response TEXT NOT NULL);
"""


class CheckpointError(ValueError):
    """The checkpoint file cannot be used for this run (unreadable, or another bucket/prefix)."""


class CheckpointBusy(CheckpointError):
    """Another run holds the checkpoint's lock."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def _symlink_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint {path} is a symbolic link (to {os.readlink(path)}): refused, so that nothing is "
        "written through a link; pass the file itself to --resume"
    )


def _open_nofollow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a link (Linux/macOS, FreeBSD)
            raise CheckpointError(f"{path} is a symbolic link: refused; pass the file itself to --resume") from None
        raise


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
    # Answered but not finished (and after `after`): reusable while the object's ETag is unchanged.
    answers: dict[str, Answer] = field(default_factory=dict)

    def skip(self, key: str) -> bool:
        """True when the listing should not hand this key out again."""
        return key in self.done or key in self.retry


def _connect(path: Path) -> sqlite3.Connection:
    """Open the checkpoint database, refusing a link and anything that is not one of ours."""
    if path.is_symlink():
        raise _symlink_error(path)
    with os.fdopen(_open_nofollow(path, os.O_RDWR | os.O_CREAT), "rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        if header.startswith(b'{"kind":"start"'):
            raise CheckpointError(
                f"{path} is a checkpoint of an earlier cos-autotag (JSON Lines), which this version does not "
                "read: finish that run with the version that wrote it, or start afresh with a new --resume "
                "file (objects already labeled then cost one read each, no detect-label call)"
            )
        raise CheckpointError(f"{path} is not a checkpoint (not an SQLite database); give another --resume file")
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except sqlite3.DatabaseError as error:
        db.close()
        raise CheckpointError(f"cannot use the checkpoint {path}: {error}") from error
    return db


def _meta(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT name, value FROM meta").fetchall())


def _check_scope(path: Path, meta: Mapping[str, str], scope: Mapping[str, str]) -> None:
    if "version" not in meta:
        return  # a new, empty checkpoint
    if meta["version"] != str(VERSION):
        raise CheckpointError(f"{path} was written by another checkpoint version ({meta['version']!r})")
    for name in SCOPE_FIELDS:
        if meta.get(name, "") != scope.get(name, ""):
            raise CheckpointError(
                f"{path} belongs to another run: its {name} is {meta.get(name, '')!r}, this run's is "
                f"{scope.get(name, '')!r}; use another --resume file or the same options"
            )


def load(path: Path, scope: Mapping[str, str]) -> ResumeState:
    """Read a checkpoint written for `scope`; an absent or empty file is a fresh start."""
    if not path.exists() and not path.is_symlink():
        return ResumeState()
    try:
        with closing(_connect(path)) as db:
            meta = _meta(db)
            _check_scope(path, meta, scope)
            after = meta.get("after", "")
            state = ResumeState(after=after, finished=meta.get("finished") == "1")
            state.retry = dict(db.execute("SELECT key, size FROM keys WHERE state = 'failed'").fetchall())
            state.done = {
                key for (key,) in db.execute("SELECT key FROM keys WHERE state = 'done' AND key > ?", (after,))
            }
            state.answers = {
                key: Answer(etag, json.loads(response))
                for key, etag, response in db.execute("SELECT key, etag, response FROM answers WHERE key > ?", (after,))
            }
    except (OSError, sqlite3.Error) as error:
        raise CheckpointError(f"cannot read the checkpoint {path}: {error}") from error
    return state


class CheckpointWriter:
    """Records a run's progress, a committed row per call.

    The writer holds the checkpoint's lock until `close`: pass the `CheckpointLock` taken before
    the checkpoint was `load`ed (so that what was read is still the file's content), or let the
    writer take it. Raises CheckpointBusy when another run holds it."""

    def __init__(self, path: Path, scope: Mapping[str, str], *, lock: CheckpointLock | None = None) -> None:
        self.path = path
        self.scope = {k: scope.get(k, "") for k in SCOPE_FIELDS}
        self._lock = threading.Lock()  # answers are stored from the pipeline's threads
        self._run_lock = lock if lock is not None else CheckpointLock(path)
        if not self._run_lock.held or self._run_lock.path != path:
            raise ValueError(f"the lock passed is not held for {path}")
        try:
            self._db = _connect(path)
            meta = _meta(self._db)
            _check_scope(path, meta, self.scope)
            runs = int(meta.get("runs", "0")) + 1
            with self._db:
                self._db.execute("BEGIN")
                self._set({**self.scope, "version": str(VERSION), "finished": "0", "runs": str(runs)})
        except (OSError, sqlite3.Error) as error:
            self._run_lock.release()
            raise CheckpointError(f"cannot write the checkpoint {path}: {error}") from error
        except BaseException:
            self._run_lock.release()
            raise

    def _set(self, values: Mapping[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def answer(self, key: str, etag: str, response: Any) -> None:
        """Keep a detect-label answer: committed and synced when this returns.

        Raises TypeError/ValueError for a response JSON cannot hold, sqlite3.Error if it cannot be written."""
        text = json.dumps(response, ensure_ascii=False)
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (key, etag, text))
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def _finish(self, key: str, state: str, outcome: str | None, size: int | None, reason: str | None) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?)", (key, state, outcome, size, reason))
            self._db.execute("DELETE FROM answers WHERE key = ?", (key,))

    def done(self, key: str, outcome: str) -> None:
        self._finish(key, "done", outcome, None, None)

    def failed(self, key: str, size: int | None, reason: str) -> None:
        self._finish(key, "failed", None, size, reason[:300])

    def mark(self, after: str) -> None:
        """Every listed key up to `after` is finished: what a resume no longer needs goes."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._set({"after": after})
            # SQLite compares TEXT as bytes: UTF-8 byte order, the order COS lists in.
            self._db.execute("DELETE FROM keys WHERE state = 'done' AND key <= ?", (after,))
            self._db.execute("DELETE FROM answers WHERE key <= ?", (after,))

    def end(self) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._set({"finished": "1"})
            self._db.execute("DELETE FROM answers")  # every listed key is finished

    def close(self) -> None:
        """Close the database and release the lock (the next run may start on the file then)."""
        with self._lock:
            try:
                self._db.close()
            finally:
                self._run_lock.release()


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
        except (OSError, sqlite3.Error, TypeError, ValueError) as error:
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
