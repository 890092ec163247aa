"""SCF entry point: `handler: index.main_handler` in serverless.yml."""

from cos_autotag.handler import main_handler

__all__ = ["main_handler"]
