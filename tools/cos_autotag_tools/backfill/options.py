"""The options of one backfill run, as parsed from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_QPS = 10.0
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 64
DEFAULT_BATCH = 10
# Generous: an object waits for its detect-label token and retries inside this.
OBJECT_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Options:
    bucket: str
    region: str
    prefix: str = ""
    concurrency: int = DEFAULT_CONCURRENCY
    qps: float = DEFAULT_QPS
    burst: float = 1.0
    dry_run: bool = False
    relabel: bool = False  # ignore the marker: label every listed object again
    resume: Path | None = None
    progress: bool = True
    report_path: Path | None = None
    object_deadline_s: float = OBJECT_DEADLINE_S
    # --via-scf: fan the objects out to the deployed function instead of labeling here.
    via_scf: str | None = None
    scf_region: str = ""
    scf_namespace: str = "default"
    scf_qualifier: str = "$LATEST"
    batch: int = DEFAULT_BATCH
    scf_endpoint: tuple[str, str] | None = None  # (scheme, host:port), tests only
