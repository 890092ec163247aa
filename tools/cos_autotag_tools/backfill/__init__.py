"""Backfill: label the objects already in a bucket, here or by fanning out to the function.

listing.py     paginated ListObjects, in key order
rate.py        the token bucket pacing detect-label near the quota (AIMD)
checkpoint.py  --resume: an append-only record of finished keys and detect-label answers
report.py      counts, failures, API calls and the detect-label cost
progress.py    the progress bar (tqdm, optional)
runner.py      labeling here, through the function's pipeline and guard
fanout.py      --via-scf: synthetic COS events to the deployed function
cli.py         the command line
"""

from __future__ import annotations

from .cli import run_backfill

__all__ = ["run_backfill"]
