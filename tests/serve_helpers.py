"""Test helpers for `gankit serve` (a helper module, not a test file): a real server subprocess.

`start_server` runs ``python -m gankit.cli serve --port 0 ...`` for real, waits for its
ready line (which names the port it bound on 127.0.0.1) and returns a `Server`; `stop`
sends SIGTERM and returns the exit code. Every wait is bounded. Standard library only,
so the torch-free venv test can use it with that venv's Python.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READY = re.compile(r"gankit serve: ready on (http://127\.0\.0\.1:\d+)")


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, stdout: list[str], stderr_path: Path):
        self.proc = proc
        self.url = url
        self.stdout = stdout
        self.stderr_path = stderr_path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` (if still running) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"server did not stop within {timeout} s after signal {sig}")


def start_server(*args: str, python: str = sys.executable, env: dict | None = None, timeout: float = 90,
                 cwd: Path | None = None) -> Server:
    """Start `gankit serve --port 0 ARGS` and wait until it says it is ready."""
    stderr_path = Path(tempfile.mkstemp(prefix="gankit-serve-", suffix=".err")[1])
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [python, "-m", "gankit.cli", "serve", "--port", "0", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(stderr_path, "wb"), text=True, env=full_env,
                            cwd=cwd or REPO)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:  # keeps reading, so the pipe never fills
        for line in proc.stdout:
            lines.append(line)
            match = READY.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server not ready within {timeout} s:\n{''.join(lines)}\n{stderr_path.read_text()}")
    if not found:
        proc.wait(10)
        raise AssertionError(f"server exited ({proc.returncode}) before it was ready:\n{''.join(lines)}\n"
                             f"{stderr_path.read_text()}")
    return Server(proc, found[0], lines, stderr_path)


def shipped_models() -> dict[str, Path]:
    return {"conditional": REPO / "exports" / "conditional.onnx", "per-digit": REPO / "exports" / "per-digit.onnx"}
