"""The curl examples in docs/serving.md, run for real: real curl subprocesses against real servers.

Every ```sh block of the document that calls curl is run with bash (``set -e``) in a
fresh folder, with the documented address ``127.0.0.1:8000`` replaced by the test
server's. Blocks that use ``$GANKIT_API_KEY``, and the one under "The API key", run
against a second server started with a key; the rest against one serving both shipped
models. Each ``# prints: TEXT`` line of a block must appear in what the block printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serve_helpers import REPO, start_server, shipped_models

DOC = REPO / "docs" / "serving.md"
KEY = "docs-example-key-123"


def blocks() -> list[tuple[str, str]]:
    """(section heading, code) of each ```sh block that runs curl."""
    found, heading, fence, code = [], "", None, []
    for line in DOC.read_text().splitlines():
        if fence is None and line.startswith("```"):
            fence, code = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == "sh" and any("curl" in c for c in code):
                found.append((heading, "\n".join(code) + "\n"))
            fence = None
        elif fence is not None:
            code.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return found


def test_the_document_has_curl_examples_for_every_part():
    headings = {h for h, _ in blocks()}
    assert {"The /v1 API", "Errors", "The API key", "Open Inference Protocol (/v2)"} <= headings


@pytest.fixture(scope="module")
def servers():
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    models = shipped_models()
    plain = start_server(models["conditional"], models["per-digit"])
    keyed = start_server(models["conditional"], env={"GANKIT_API_KEY": KEY})
    yield {"plain": plain, "keyed": keyed}
    assert plain.stop() == 0 and keyed.stop() == 0


def _id(value: str) -> str:
    return re.sub(r"\W+", "-", value[:40]).strip("-")


@pytest.mark.parametrize("heading, code", blocks(), ids=_id)
def test_doc_example_runs(servers, heading, code, tmp_path):
    keyed = "$GANKIT_API_KEY" in code or heading == "The API key"
    server = servers["keyed" if keyed else "plain"]
    address = server.url.removeprefix("http://")
    script = "set -euo pipefail\n" + code.replace("127.0.0.1:8000", address)
    # `gankit` and `python3` as a reader of this document has them: this checkout's.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gankit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gankit.cli "$@"\n')
    (bin_dir / "python3").symlink_to(sys.executable)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GANKIT_API_KEY": KEY if keyed else ""}
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"{script}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    for expected in re.findall(r"^# prints: (.*)$", code, re.M):
        assert expected in proc.stdout, f"{expected!r} not in:\n{proc.stdout}"
    assert "Traceback" not in proc.stdout + proc.stderr
