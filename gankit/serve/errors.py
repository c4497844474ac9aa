"""The server's one error shape: ``{"error": message, "status": code, ...}`` as JSON.

Light tier (standard library). Handlers raise `ApiError`; the app turns it, and any
other failure, into that JSON, never a traceback. ``error`` is a string, as the Open
Inference Protocol asks, so the /v2 routes share the shape. Statuses:

* 400 malformed body (not JSON, not an object); 401 missing or wrong API key;
* 404 unknown model or route; 405 wrong method; 413 body over the cap;
* 415 wrong content type; 422 a well-formed request asking for something impossible
  (unknown digit, n over --max-n, bad seed, wrong tensor shape);
* 500 the model failed; 503 queue full (with Retry-After) or not ready; 504 timed out.
"""

from __future__ import annotations

import json
from typing import Any

from gankit.errors import GankitError, UsageError

REASONS = {400: "bad request", 401: "unauthorized", 404: "not found", 405: "method not allowed",
           413: "content too large", 415: "unsupported media type", 422: "unprocessable content",
           500: "internal server error", 503: "service unavailable", 504: "gateway timeout"}


class ApiError(Exception):
    """A request the server refuses: an HTTP status, a message, optional headers and fields."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status, **self.extra}

    def body(self) -> bytes:
        return json.dumps(self.payload()).encode()


def from_gankit_error(exc: GankitError, **extra: Any) -> ApiError:
    """A usage error is the caller's (422); anything else (a model failing) is the server's (500)."""
    status = 422 if isinstance(exc, UsageError) else 500
    return ApiError(status, str(exc), **extra)


def error_body(status: int, message: str, **extra: Any) -> bytes:
    """The JSON bytes of an error, for code outside the app (middleware)."""
    return ApiError(status, message, **extra).body()
