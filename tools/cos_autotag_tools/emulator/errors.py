"""The one exception the emulator's operations raise to answer with a COS-style error."""

from __future__ import annotations

from cos_autotag_tools import cos_facts


class CosError(Exception):
    """A COS/CI error answer: HTTP status, error code and a message for the `<Error>` body.

    The status defaults to the one COS documents for the code, so call sites name only the code.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else cos_facts.COS_ERROR_STATUS.get(code, 400)
        # Extra response headers (e.g. none today, but 304/412 answers may want ETag).
        self.headers = dict(headers or {})
