"""The pieces of `gankit serve` in process: settings, request parsing, tensors, the key, the batcher, web-export."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit.errors import MissingDependencyError, UsageError
from gankit.serve.protocol import oip, params
from gankit.serve.middleware.auth import presented_key
from gankit.serve.batcher import MicroBatcher
from gankit.serve.config import ServeConfig
from gankit.serve.errors import ApiError
from gankit.serve.models import load_models, model_name
from serve_helpers import shipped_models

MODELS = shipped_models()


@pytest.fixture(scope="module")
def models():
    return load_models([MODELS["per-digit"], MODELS["conditional"]])


def test_config_refuses_impossible_settings():
    ServeConfig().check()
    for bad in ({"port": 70000}, {"max_batch": 0}, {"workers": 0}, {"max_wait_ms": -1}, {"max_n": 0}, {"queue": 0},
                {"api_key": "short"}, {"api_key": " spaced-key "}, {"cors_origins": ("example.org",)},
                {"threads": 0}, {"host": " "}):
        with pytest.raises(UsageError):
            ServeConfig(**bad).check()
    assert not ServeConfig().public and ServeConfig(host="0.0.0.0").public
    assert "secret" not in repr(ServeConfig(api_key="secret-key-123"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_host_string_is_accepted_or_refused_as_a_usage_error(host):
    """No --host value reaches getaddrinfo in a form it cannot encode (idna raised UnicodeError)."""
    try:
        ServeConfig(host=host).check()
    except UsageError:
        return
    host.encode("idna")  # what was accepted, the resolver can encode


@pytest.mark.parametrize("host, ok", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                      ("my-box.example.", True), ("0.0.0.0", True), ("../../etc", False),
                                      ("x" * 300, False), ("a-.b", False), ("a..b", False), ("", False)])
def test_host_names_and_addresses(host, ok):
    if ok:
        assert ServeConfig(host=host).check().host == host
    else:
        with pytest.raises(UsageError, match="--host"):
            ServeConfig(host=host).check()


def test_model_names_are_file_stems(tmp_path):
    assert model_name(MODELS["per-digit"]) == "per-digit"
    with pytest.raises(UsageError):
        model_name(tmp_path / "a b.onnx")
    with pytest.raises(UsageError, match="both be served"):
        load_models([MODELS["per-digit"], MODELS["per-digit"]])


def test_query_and_json_mean_the_same_request(models):
    q = params.from_query([("model", "per-digit"), ("digit", "1"), ("digit", "2"), ("n", "3"), ("seed", "5")],
                          models, "per-digit", 64)
    j = params.from_json({"model": "per-digit", "digits": [1, 2], "n": 3, "seed": 5}, models, "per-digit", 64)
    c = params.from_query([("digits", "1,2"), ("n", "3"), ("seed", "5")], models, "per-digit", 64)
    for req in (q, j, c):
        assert req.digits == (1, 2) and req.n == 3 and req.seed == 5 and req.columns == 3
        assert req.labels.tolist() == [1, 1, 1, 2, 2, 2]
    every = params.from_json({}, models, "conditional", 64)
    assert every.model.name == "conditional" and every.digits == tuple(range(10)) and every.n == params.DEFAULT_N
    assert every.seed == 0 and every.format == "png"
    fresh = params.from_query([("seed", "random")], models, "per-digit", 1000)
    assert 0 <= fresh.seed < 2**63


@pytest.mark.parametrize("raw, status", [
    ({"digit": 11}, 422), ({"digit": "7"}, 422), ({"digits": []}, 422), ({"digits": 7}, 422),
    ({"n": 65}, 422), ({"n": True}, 422), ({"seed": 2**64}, 422), ({"model": "x"}, 404), ({"model": 3}, 422),
    ({"format": "bmp"}, 422), ({"scale": 0}, 422), ({"colour": "red"}, 422),
])
def test_bad_requests(models, raw, status):
    with pytest.raises(ApiError) as info:
        params.from_json(raw, models, "per-digit", 64)
    assert info.value.status == status and info.value.message


def test_bad_query_strings(models):
    for items in ([("digit", "")], [("n", "1e3")], [("n", "2"), ("n", "3")], [("digit", "1"), ("digits", "2")]):
        with pytest.raises(ApiError) as info:
            params.from_query(items, models, "per-digit", 64)
        assert info.value.status == 422


def test_binary_tensors_parse_like_json_ones(models):
    model = models["per-digit"]
    z = np.arange(200, dtype=np.float32).reshape(2, 100) / 100
    labels = np.array([3, 4], dtype=np.int64)
    head = json.dumps({"inputs": [
        {"name": "label", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
        {"name": "z", "datatype": "FP32", "shape": [2, 100], "parameters": {"binary_data_size": 800}}],
        "outputs": [{"name": "image", "parameters": {"binary_data": True}}]}).encode()
    req = oip.parse_infer(head + labels.tobytes() + z.tobytes(), str(len(head)), model, 64)
    assert np.array_equal(req.z, z) and np.array_equal(req.labels, labels) and req.binary_output
    as_json = json.dumps({"inputs": [{"name": "z", "datatype": "FP32", "shape": [2, 100], "data": z.tolist()},
                                     {"name": "label", "datatype": "INT64", "shape": [2], "data": [3, 4]}]}).encode()
    req2 = oip.parse_infer(as_json, None, model, 64)
    assert np.array_equal(req2.z, z) and not req2.binary_output
    body, headers = oip.infer_response(model, req, np.zeros((2, 1, 28, 28), np.float32))
    split = int(headers[oip.HEADER_LENGTH])
    meta = json.loads(body[:split])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == len(body) - split == 2 * 784 * 4
    for bad_body, length in ((head + labels.tobytes(), str(len(head))),  # data cut short
                             (head + labels.tobytes() + z.tobytes() + b"x", str(len(head))),  # bytes left over
                             (head, "nine"), (b"[]", None)):
        with pytest.raises(ApiError) as info:
            oip.parse_infer(bad_body, length, model, 64)
        assert info.value.status in (400, 422)
    nan = as_json.replace(b"0.0,", b"NaN,", 1)
    with pytest.raises(ApiError, match="NaN"):
        oip.parse_infer(nan, None, model, 64)


def test_the_key_is_read_from_each_place():
    assert presented_key([(b"authorization", b"Bearer abc-123")]) == "abc-123"
    assert presented_key([(b"x-api-key", b"abc-123")]) == "abc-123"
    basic = base64.b64encode(b"me:abc-123")
    assert presented_key([(b"authorization", b"Basic " + basic)]) == "abc-123"
    assert presented_key([(b"authorization", b"Basic !!!")]) is None
    assert presented_key([]) is None


def test_batcher_merges_splits_and_skips_cancelled_jobs(models):
    model = models["conditional"]
    gen = model.generator
    seen: list[tuple[int, int]] = []

    async def go():
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=50, queue_limit=100,
                               on_batch=lambda rows, jobs, s: seen.append((rows, jobs)))
        batcher.start()
        asks = [(3, 1, 5), (4, 2, 6), (5, 3, 7), (6, 6, 8)]  # (digit, n, seed): 12 rows in all
        tasks = [asyncio.ensure_future(batcher.images(gen.labels_for(d, n), s)) for d, n, s in asks]
        doomed = asyncio.ensure_future(batcher.images(gen.labels_for(1, 1), 1))
        await asyncio.sleep(0)
        doomed.cancel()
        results = await asyncio.gather(*tasks)
        z = gen.sample_latent(2, 3)
        raw = await batcher.tensor(z, np.array([1, 2]))
        await batcher.stop()
        return asks, results, z, raw

    asks, results, z, raw = asyncio.run(go())
    for (d, n, s), images in zip(asks, results):
        assert np.array_equal(images, gen.generate(d, n=n, seed=s))
    assert np.array_equal(raw, gen.generate_float(z, np.array([1, 2])))
    # At most 8 rows a run: 1+2+3 rows merged, then 6 rows alone (the cancelled job never ran), then the tensor.
    assert seen == [(6, 3), (6, 1), (2, 1)], seen


def test_batcher_queue_limit():
    models_ = load_models([MODELS["per-digit"]])
    model = models_["per-digit"]

    async def go():
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=200, queue_limit=2)
        batcher.start()
        labels = np.array([1], dtype=np.int64)
        first = [asyncio.ensure_future(batcher.images(labels, i)) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as info:
            await batcher.images(labels, 3)
        await asyncio.gather(*first)
        await batcher.stop()
        return info.value

    refused = asyncio.run(go())
    assert refused.status == 503 and refused.headers == {"Retry-After": "1"}


def test_web_export_writes_the_static_folder_and_refuses_what_it_cannot_do(tmp_path):
    from gankit.serve.webexport import ORT_WEB_URL, ORT_WEB_VERSION, RUNTIME_FILES, export_web

    out = tmp_path / "site"
    files = export_web(MODELS["per-digit"], out)
    names = {p.relative_to(out).as_posix() for p in files}
    assert names == {"index.html", "gankit.js", "grid.js", "style.css", "model.onnx", "model.json"}
    assert (out / "model.onnx").read_bytes() == MODELS["per-digit"].read_bytes()
    meta = json.loads((out / "model.json").read_text())
    assert meta["ort_web_version"] == ORT_WEB_VERSION and meta["classes"] == list(range(10))
    assert ORT_WEB_URL + RUNTIME_FILES[0] in (out / "index.html").read_text()
    assert ORT_WEB_VERSION in ORT_WEB_URL

    with pytest.raises(UsageError, match="not an empty folder"):
        export_web(MODELS["per-digit"], out)
    fake = tmp_path / "node_modules" / "onnxruntime-web"
    (fake / "dist").mkdir(parents=True)
    for name in RUNTIME_FILES:
        (fake / "dist" / name).write_text("x")
    (fake / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": "1.0.0"}))
    with pytest.raises(UsageError, match="1.0.0"):
        export_web(MODELS["per-digit"], tmp_path / "other", fake / "dist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no ort.wasm.min.js"):
        export_web(MODELS["per-digit"], tmp_path / "other", tmp_path / "empty")
    (fake / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": ORT_WEB_VERSION}))
    local = export_web(MODELS["per-digit"], tmp_path / "offline", tmp_path)  # finds node_modules/.../dist
    assert {f"ort/{n}" for n in RUNTIME_FILES} <= {p.relative_to(tmp_path / "offline").as_posix() for p in local}
    assert 'src="ort/ort.wasm.min.js"' in (tmp_path / "offline" / "index.html").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert not (tmp_path / "other").exists()


def test_web_export_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "web-export", str(MODELS["per-digit"]),
                           str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 6 files" in proc.stdout and (tmp_path / "site" / "index.html").is_file()


def test_missing_serve_extra_says_how_to_install_it(monkeypatch):
    from gankit.serve import extra

    monkeypatch.setattr(extra, "missing_serve_modules", lambda: ["starlette"])
    with pytest.raises(MissingDependencyError, match=r"needs the serve extra .*pip install .*\[serve\]"):
        extra.require_serve_extra()


def test_serve_help_lists_every_option():
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "serve", "--help"], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for option in ("--host", "--port", "--threads", "--max-batch", "--max-wait-ms", "--max-n", "--queue",
                   "--cors-origin", "--api-key", "GANKIT_API_KEY"):
        assert option in proc.stdout, option
    top = subprocess.run([sys.executable, "-m", "gankit.cli", "--help"], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert "serve" in top.stdout and "web-export" in top.stdout


def test_no_model_given_serves_the_shipped_one():
    assert list(load_models([])) == ["conditional"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_failing_model_is_500_and_a_stuck_one_504():
    from starlette.testclient import TestClient

    from gankit.errors import ModelFileError
    from gankit.serve.app import create_app

    served = load_models([MODELS["per-digit"]])
    gen = served["per-digit"].generator
    real = gen.generate_float
    with TestClient(create_app(served, ServeConfig(request_timeout_s=0.3))) as client:
        gen.generate_float = lambda z, labels: np.full((len(z), 1, 28, 28), np.nan, np.float32)
        nan = client.get("/v1/generate?digit=1&n=2")
        assert nan.status_code == 500 and "non-finite" in nan.json()["error"]

        def broken(z, labels):
            raise ModelFileError("per-digit.onnx: the model fails when run on a batch of 2")

        gen.generate_float = broken
        failed = client.get("/v1/generate?digit=1&n=2")
        assert failed.status_code == 500 and "fails when run" in failed.json()["error"]

        def slow(z, labels):
            time.sleep(1.0)
            return real(z, labels)

        gen.generate_float = slow
        stuck = client.get("/v1/generate?digit=1&n=2")
        assert stuck.status_code == 504 and "within 0.3 s" in stuck.json()["error"]
        gen.generate_float = real
        time.sleep(1.0)  # the worker thread finishes the stuck run, then serves again
        assert client.get("/v1/generate?digit=1&n=2").status_code == 200


def test_two_workers_run_batches_side_by_side_and_each_caller_gets_its_own(models):
    model = models["per-digit"]
    gen = model.generator
    runs: list[tuple[int, int]] = []

    async def go():
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=0, queue_limit=100, workers=2,
                               on_batch=lambda rows, jobs, s: runs.append((rows, jobs)))
        batcher.start()
        asks = [(d % 10, 1 + d % 3, 100 + d) for d in range(24)]
        results = await asyncio.gather(*(batcher.images(gen.labels_for(d, n), s) for d, n, s in asks))
        await batcher.stop()
        return asks, results

    asks, results = asyncio.run(go())
    for (d, n, s), images in zip(asks, results):
        assert np.array_equal(images, gen.generate(d, n=n, seed=s))
    assert sum(rows for rows, _ in runs) == sum(n for _, n, _ in asks)
    assert all(rows <= 4 for rows, _ in runs) and len(runs) < len(asks)
