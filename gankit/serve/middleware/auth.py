"""The API key: with ``--api-key`` (or ``$GANKIT_API_KEY``) set, every route but health needs it.

Light tier (standard library). `ApiKeyMiddleware` is plain ASGI. The key is accepted as
``Authorization: Bearer KEY``, as ``X-API-Key: KEY``, or as the password of HTTP Basic
authentication (any user name): a browser asks for that itself when it gets the 401, so
the page at ``/`` works behind a key without putting the key in the page or the URL.
Keys are compared in constant time. The health routes stay open so that an orchestrator
can probe the server without the key; CORS preflights never reach this middleware (the
CORS middleware outside it answers them).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from gankit.serve.errors import error_body

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries, from any of the three places, or None."""
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                return credentials.strip()
            if scheme == "basic":
                try:
                    decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return None
                return decoded.partition(":")[2]
    return None


class ApiKeyMiddleware:
    def __init__(self, app, key: str):
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = presented_key(scope["headers"])
        if given is not None and hmac.compare_digest(given.encode(), self.key):
            return await self.app(scope, receive, send)
        message = "this server needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        if given is not None:
            message = "wrong API key"
        body = error_body(401, message)
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Basic realm="gankit", charset="UTF-8"'),
                                (b"www-authenticate", b'Bearer realm="gankit"')]})
        await send({"type": "http.response.body", "body": body})
