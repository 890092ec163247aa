"""`python -m tests.bench` is the same as `python -m tests.bench.run`."""

import sys

from .run import main

sys.exit(main())
