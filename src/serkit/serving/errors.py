"""The one error type of the service: a request that ends with an HTTP status and a message."""

from __future__ import annotations

import re

__all__ = ["RETRY_AND_CLOSE", "HTTPFailure", "scrub"]

#: Headers of a 503 answered before the body was read: retry in a second, on a new connection.
RETRY_AND_CLOSE = {"Retry-After": "1", "Connection": "close"}
# Absolute paths that might appear in an error from a library: never echo them to a client.
_PATHS = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-]+){2,}[\\/]?")


class HTTPFailure(Exception):
    """A request that ends with an error status; the app turns it into ``{"detail": ...}``.

    Attributes:
        status: The HTTP status code.
        detail: The message for the client.
        headers: Extra response headers (``Retry-After``, ``Connection: close``).
        code: A machine code for the body (quality refusals such as ``silent``), or None.
    """

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.code = code


def scrub(message: str) -> str:
    """Remove server-side paths from an error message before it goes to a client."""
    return _PATHS.sub("<path>", message)
