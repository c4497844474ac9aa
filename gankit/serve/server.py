"""Run the app under uvicorn: bind, warm up, say where it listens, drain on SIGTERM, exit 0.

Light tier plus the ``serve`` extra. `serve` binds the socket itself (``--port 0`` takes
any free port and the ready line names it) and listens before the models are warmed up,
so a client that connects as soon as it reads the ready line is queued by the kernel, not
refused. On SIGTERM or Ctrl-C uvicorn stops accepting connections, lets the requests in
flight finish (at most ``drain_timeout_s``), then the batchers finish what is queued;
`serve` then returns and the command exits 0.
"""

from __future__ import annotations

import signal
import socket
import sys
from typing import Callable

from gankit.errors import GankitError
from gankit.serve.config import ServeConfig
from gankit.serve.extra import require_serve_extra
from gankit.serve.models import ServedModel

BACKLOG = 2048
READY = "gankit serve: ready on"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), or GankitError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise GankitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except UnicodeError:
        raise GankitError(f"cannot listen on {host[:80]!r}: not a name the resolver can encode") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise GankitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _drained(signum, frame) -> None:
    """uvicorn re-raises the stop signal once it has drained; by then there is nothing left to do."""


def serve(models: dict[str, ServedModel], config: ServeConfig, say: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain and return."""
    require_serve_extra()
    import uvicorn

    from gankit.serve.app import create_app

    say = say or (lambda line: print(line, flush=True))
    config = config.check()
    sock = bind(config.host, config.port)
    url = url_of(sock)

    def on_ready() -> None:
        names = ", ".join(models)
        say(f"{READY} {url} (models: {names}; page {url}/ , API docs {url}/docs)")
        if config.public and config.api_key is None:
            say("gankit serve: warning: listening beyond this machine without an API key (--api-key)")

    app = create_app(models, config, on_ready)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", server_header=False,
        timeout_graceful_shutdown=config.drain_timeout_s, timeout_keep_alive=5))
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise GankitError("the server did not start (see the message above)")
    say("gankit serve: stopped")
    sys.stdout.flush()
