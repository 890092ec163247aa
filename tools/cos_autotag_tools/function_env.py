"""Run the real handler in this process the way SCF runs it: settings and the role's keys in
the environment, read by a fresh container. The caller's environment is put back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def function_environment(env: Mapping[str, str]) -> Iterator[None]:
    from cos_autotag import handler as handler_module

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    handler_module._app = None  # a fresh container: main_handler reads the variables above
    try:
        yield
    finally:
        handler_module._app = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
