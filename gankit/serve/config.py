"""The settings of `gankit serve` (`ServeConfig`), their defaults and their checks.

Light tier (standard library). The command line fills a `ServeConfig`; `check` refuses
impossible values with a `UsageError` (exit 2) before any model is loaded or any port is
bound.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from gankit.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Rows (images) per onnxruntime run. The shipped conditional DCGAN costs ~0.67 ms an image
# from 16 rows on and ~0.9 ms at one row (2 threads, the 2-core CPU idle); past that, a bigger run only
# makes its first caller wait longer.
DEFAULT_MAX_BATCH = 64
# How long the first request of a batch may wait for others to join it. 0: none; the
# batch is whatever queued while the previous one ran, which under load is most of the
# callers. Tried on the 2-core CPU with 2 and 5 ms: waiting only added latency at
# concurrency 1 and 8 and did not raise throughput at 64.
DEFAULT_MAX_WAIT_MS = 0.0
# Images one request may ask for (n times the number of digits): 256 is a 16 x 16 grid.
DEFAULT_MAX_N = 256
# Requests waiting per model, beyond which a request gets 503 and Retry-After.
DEFAULT_QUEUE = 256
# Request bodies: a /v2 infer body of 256 rows of z (100 floats each) is ~0.6 MB as JSON.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# A request that has waited this long for its images gets 504 instead of hanging.
DEFAULT_REQUEST_TIMEOUT_S = 30.0
# On SIGTERM, requests in flight get this long to finish before they are cancelled.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
# The environment variable that may hold the API key (safer than --api-key, which `ps` shows).
API_KEY_ENV = "GANKIT_API_KEY"
MAX_THREADS = 64


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def is_host(host: str) -> bool:
    """True for an IPv4/IPv6 literal or a DNS name (RFC 1123 labels, at most 253 characters).

    Checked here so that a name the resolver cannot even encode (for example ``../etc`` or
    300 characters) is a usage error, not an encoding traceback from getaddrinfo.
    """
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


@dataclass(frozen=True)
class ServeConfig:
    """Everything the server needs besides its models."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    workers: int = 1
    max_n: int = DEFAULT_MAX_N
    queue: int = DEFAULT_QUEUE
    cors_origins: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    # "batch": the micro-batcher. "per-request": one onnxruntime call per request in a thread
    # pool, the naive server that bench/bench_serve.py compares against; not a CLI option.
    dispatch: str = "batch"

    def replace(self, **changes) -> "ServeConfig":
        return dataclasses.replace(self, **changes)

    def check(self) -> "ServeConfig":
        """Return self, or raise UsageError naming the first bad setting."""
        if not self.host.strip():
            raise UsageError("--host is empty")
        if not is_host(self.host):
            raise UsageError(f"--host must be an IP address or a host name, got {self.host[:80]!r}")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be from 0 to 65535 (0: any free port), got {self.port}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise UsageError(f"--threads must be from 1 to {MAX_THREADS}, got {self.threads}")
        if not 1 <= self.max_batch <= 4096:
            raise UsageError(f"--max-batch must be from 1 to 4096, got {self.max_batch}")
        if not 1 <= self.workers <= MAX_THREADS:
            raise UsageError(f"--workers must be from 1 to {MAX_THREADS}, got {self.workers}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise UsageError(f"--max-wait-ms must be from 0 to 10000, got {self.max_wait_ms}")
        if not 1 <= self.max_n <= 65_536:
            raise UsageError(f"--max-n must be from 1 to 65536, got {self.max_n}")
        if not 1 <= self.queue <= 100_000:
            raise UsageError(f"--queue must be from 1 to 100000, got {self.queue}")
        if not 1024 <= self.max_body_bytes <= 1 << 30:
            raise UsageError(f"the body cap must be from 1 KiB to 1 GiB, got {self.max_body_bytes} bytes")
        if self.request_timeout_s <= 0 or self.drain_timeout_s < 0:
            raise UsageError("timeouts must be positive")
        if self.api_key is not None and (len(self.api_key) < 8 or not self.api_key.isprintable()
                                         or self.api_key != self.api_key.strip()):
            raise UsageError("the API key must be at least 8 printable characters, without surrounding spaces")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise UsageError(f"--cors-origin takes an origin such as https://example.org, or *; got {origin!r}")
        if self.dispatch not in ("batch", "per-request"):
            raise UsageError(f"dispatch must be 'batch' or 'per-request', got {self.dispatch!r}")
        return self

    @property
    def public(self) -> bool:
        """Whether the host is reachable from other machines (not a loopback address)."""
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"

    def limits(self) -> dict:
        """The limits a client may want to know (served by GET /v1/models)."""
        return {"max_n": self.max_n, "max_batch": self.max_batch, "max_wait_ms": self.max_wait_ms,
                "queue": self.queue, "max_body_bytes": self.max_body_bytes}
