"""`python -m cos_autotag_tools.emulator [--port P] ...`: the same as `cos-autotag local`."""

import sys

from .cli import run_local

sys.exit(run_local())
