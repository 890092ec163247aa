"""Exceptions of the offline label engine, each named for what happened."""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """The bytes are not a PNG or JPEG image that can be decoded (CI answers InvalidImageFormat)."""


class UnsafePickleError(ValueError):
    """A checkpoint pickle referenced something other than tensors, storages or OrderedDict.

    A pickle is a program: loading an arbitrary global could run arbitrary code, so the
    loader refuses it instead of trusting the file.
    """


class CheckpointFormatError(ValueError):
    """A checkpoint file is not the legacy torch format, or its contents are inconsistent."""
