"""`gankit web-export`: a static folder that runs a model in the browser, no server code.

Light tier (numpy, onnxruntime, standard library). The folder holds ``index.html``, two
small scripts (``gankit.js``: the page, ``grid.js``: the grid, shared with the page at
``/`` of `gankit serve`), ``style.css``, ``model.onnx`` (the checked model file, copied as
is) and ``model.json`` (what the page needs from its card). onnxruntime-web runs it:

* ``--ort-dir DIR``: the runtime files are copied from a local folder, e.g. the ``dist``
  folder of ``npm install onnxruntime-web@VERSION``; the folder then works offline;
* otherwise the page loads them from a versioned URL (`ORT_WEB_URL`).

`ORT_WEB_VERSION` is the one place the onnxruntime-web version is written; .ci/run reads
it from here. Only the WebAssembly build is used (`RUNTIME_FILES`, ~14 MB), on one
thread, which needs no cross-origin isolation headers from the static server. The page
draws its latent with its own seeded generator (not numpy's stream), so a seed gives
other digits than `gankit serve`; the same latent and labels give the same pixels as
Python onnxruntime within one grey level (tests/test_browser.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from gankit.errors import GankitError, UsageError

ORT_WEB_VERSION = "1.30.0"
ORT_WEB_URL = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_WEB_VERSION}/dist/"
# The WebAssembly-only build: its loader and the module and binary it fetches beside itself.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("gankit.js", "grid.js", "style.css")
WEB = Path(__file__).resolve().parent / "web"


def _ort_version(ort_dir: Path) -> str | None:
    """The version in the package.json of an npm install (beside or above ``dist``), if any."""
    for candidate in (ort_dir / "package.json", ort_dir.parent / "package.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if data.get("name") == "onnxruntime-web":
                return str(data.get("version"))
    return None


def check_ort_dir(ort_dir: Path) -> Path:
    """The folder holding `RUNTIME_FILES` (``DIR`` or ``DIR/dist``), of the pinned version."""
    ort_dir = Path(ort_dir)
    for folder in (ort_dir, ort_dir / "dist", ort_dir / "node_modules" / "onnxruntime-web" / "dist"):
        if all((folder / name).is_file() for name in RUNTIME_FILES):
            break
    else:
        raise UsageError(f"--ort-dir {ort_dir}: no {', '.join(RUNTIME_FILES)} there; give the dist folder of "
                         f"`npm install onnxruntime-web@{ORT_WEB_VERSION}`")
    version = _ort_version(folder)
    if version is not None and version != ORT_WEB_VERSION:
        raise UsageError(f"--ort-dir {ort_dir}: that is onnxruntime-web {version}; this gankit is tested with "
                         f"{ORT_WEB_VERSION} (npm install onnxruntime-web@{ORT_WEB_VERSION})")
    return folder


def export_web(model: str | os.PathLike | None, out_dir: str | os.PathLike, ort_dir: str | os.PathLike | None = None
               ) -> list[Path]:
    """Write the static folder; return the files written. Nothing is left behind on failure."""
    from gankit.runtime import load_generator
    from gankit.serve.models import model_name

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty folder; give a new folder")
    runtime = check_ort_dir(Path(ort_dir)) if ort_dir is not None else None
    gen = load_generator(model)  # every check `gankit generate` makes, before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        stage.chmod(0o755)  # mkdtemp's 0700 would keep a static server run by another user out
        shutil.copyfile(gen.path, stage / "model.onnx")
        load_generator(stage / "model.onnx")  # the copy is the file that was checked
        card = gen.card
        ort_path = "ort/" if runtime is not None else ORT_WEB_URL
        meta = {"name": model_name(gen.path), "label_mode": card.label_mode, "classes": list(card.classes),
                "z_dim": card.z_dim, "noise": card.noise, "value_range": list(card.value_range),
                "weights_sha256": card.weights_sha256, "ort_web_version": ORT_WEB_VERSION, "ort_path": ort_path}
        (stage / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        page = (WEB / "export.html").read_text(encoding="utf-8")
        page = page.replace("{{ORT_SCRIPT}}", ort_path + RUNTIME_FILES[0]).replace("{{NAME}}", meta["name"])
        (stage / "index.html").write_text(page, encoding="utf-8")
        for name in PAGE_FILES:
            source = "export.js" if name == "gankit.js" else name
            shutil.copyfile(WEB / source, stage / name)
        if runtime is not None:
            (stage / "ort").mkdir()
            for name in RUNTIME_FILES:
                shutil.copyfile(runtime / name, stage / "ort" / name)
        written = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise GankitError(f"{out}: cannot write the export ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return [out / p for p in written]
