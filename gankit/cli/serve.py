"""`gankit serve [MODEL ...]` (HTTP API and page) and `gankit web-export MODEL DIR` (static page).

Light tier: onnxruntime, numpy, Pillow and the ``serve`` extra (Starlette, uvicorn, the
Prometheus client); never torch. Everything past typer is imported inside the commands.
See docs/serving.md. Exit codes as every command: 0 (served, then stopped by SIGTERM or
Ctrl-C after draining), 1 (a model file that fails to load, a port that cannot be bound),
2 (a bad option).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from gankit.serve import config as cfg


def serve(
    models: Annotated[Optional[list[Path]], typer.Argument(
        help="Exported .onnx models, each served under its file stem (default: the shipped conditional "
        "model). The first is the default model of /v1/generate.", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 reaches beyond this machine.")]
    = cfg.DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port (0: any free port; the ready line names it).")] = cfg.DEFAULT_PORT,
    threads: Annotated[Optional[int], typer.Option(
        help="onnxruntime threads per model (default: the CPUs this process may use, at most 8).",
        show_default=False)] = None,
    max_batch: Annotated[int, typer.Option(help="Most rows (images) in one onnxruntime run; 1 turns batching off.")]
    = cfg.DEFAULT_MAX_BATCH,
    workers: Annotated[int, typer.Option(
        help="Batches of one model that may run at once, each on its own thread (give each fewer --threads).")]
    = 1,
    max_wait_ms: Annotated[float, typer.Option(
        help="How long the first request of a batch waits for others to join it.")] = cfg.DEFAULT_MAX_WAIT_MS,
    max_n: Annotated[int, typer.Option(help="Most images one request may ask for (n times the digits).")]
    = cfg.DEFAULT_MAX_N,
    queue: Annotated[int, typer.Option(help="Requests waiting per model before 503 (with Retry-After).")]
    = cfg.DEFAULT_QUEUE,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        help="Allow browser pages from this origin (repeatable; * for any). Default: none.",
        show_default=False)] = None,
    api_key: Annotated[Optional[str], typer.Option(
        envvar=cfg.API_KEY_ENV, show_envvar=True,
        help="Require this key on every route but the health ones (prefer the environment variable: "
        "`ps` shows options).", show_default=False)] = None,
    max_body_kib: Annotated[int, typer.Option(help="Largest request body, in KiB.")]
    = cfg.DEFAULT_MAX_BODY_BYTES // 1024,
) -> None:
    """Serve models over HTTP: /v1 API, Open Inference Protocol (/v2), metrics, and a page at /."""
    from gankit.serve.extra import require_serve_extra

    require_serve_extra("serve")
    config = cfg.ServeConfig(
        host=host, port=port, threads=threads, max_batch=max_batch, workers=workers, max_wait_ms=max_wait_ms,
        max_n=max_n, queue=queue, cors_origins=tuple(cors_origin or ()), api_key=api_key or None,
        max_body_bytes=max_body_kib * 1024).check()

    from gankit.serve.models import load_models
    from gankit.serve.server import serve as run

    loaded = load_models(models or [], threads=threads)  # every file, before anything is bound
    run(loaded, config)


def web_export(
    model: Annotated[Path, typer.Argument(help="An exported .onnx model.")],
    out_dir: Annotated[Path, typer.Argument(help="A new (or empty) folder for the static page.")],
    ort_dir: Annotated[Optional[Path], typer.Option(
        help="Copy the onnxruntime-web files from here (the dist folder of `npm install onnxruntime-web`) so the "
        "page works offline. Default: the page loads them from a pinned, versioned URL.", show_default=False)] = None,
) -> None:
    """Write a static folder that runs the model in the browser with onnxruntime-web (no server code)."""
    from gankit.serve.webexport import ORT_WEB_VERSION, export_web

    files = export_web(model, out_dir, ort_dir)
    where = "copied from " + str(ort_dir) if ort_dir is not None else "loaded from a pinned URL"
    typer.echo(f"wrote {len(files)} files to {out_dir} (onnxruntime-web {ORT_WEB_VERSION}, {where}); "
               f"serve it with: python -m http.server -d {os.fspath(out_dir)} and open http://127.0.0.1:8000/")


def register(app: typer.Typer) -> None:
    """Add `gankit serve` and `gankit web-export` to the root app."""
    app.command("serve")(serve)
    app.command("web-export")(web_export)
