"""`gankit serve` for real: a server subprocess on a free 127.0.0.1 port, driven over HTTP.

Every route answers; the same seed gives the same bytes as `gankit generate` and
`gankit.load().generate()`; concurrent mixed requests each get exactly their own images
(and were merged into shared onnxruntime runs); every error status has its JSON; the API
key; a full queue; SIGTERM drains requests in flight and exits 0; a bad model file stops
the server at start-up; the Open Inference Protocol through the official tritonclient.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

import gankit
from gankit.images import make_grid, to_uint8
from serve_helpers import start_server, shipped_models

MODELS = shipped_models()
MAX_N = 64


@pytest.fixture(scope="module")
def gens():
    return {name: gankit.load(path) for name, path in MODELS.items()}


@pytest.fixture(scope="module")
def server():
    # max-wait 20 ms: concurrent requests surely share runs, which the concurrency test checks.
    srv = start_server(MODELS["conditional"], MODELS["per-digit"], "--max-n", str(MAX_N), "--max-wait-ms", "20",
                       "--max-body-kib", "512", "--cors-origin", "http://example.test")
    yield srv
    assert srv.stop() == 0, srv.stderr


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert payload["status"] == status and isinstance(payload["error"], str) and payload["error"]
    assert "Traceback" not in response.text
    return payload


# -- every route ----------------------------------------------------------------------------

def test_health_ready_pages_and_docs(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["conditional", "per-digit"]}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Every asset the pages name is served by this server: nothing from another host.
    for html in (page.text, client.get("/docs").text):
        assert not re.search(r"""(src|href)=["']https?://""", html)
        for asset in re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", html):
            assert client.get(asset).status_code == 200, asset
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/v1/generate" in doc["paths"]


def test_openapi_lists_exactly_the_routes():
    from starlette.routing import Route

    from gankit.serve.app import create_app
    from gankit.serve.config import ServeConfig
    from gankit.serve.models import load_models

    app = create_app(load_models([MODELS["per-digit"]]), ServeConfig())
    doc = json.loads(app.state.api.openapi)
    routes = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route) for m in r.methods if m != "HEAD"}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented


def test_models_are_their_gankit_info_cards(client):
    payload = client.get("/v1/models").json()
    assert payload["default"] == "conditional" and payload["limits"]["max_n"] == MAX_N
    by_name = {m["name"]: m for m in payload["models"]}
    assert list(by_name) == ["conditional", "per-digit"]
    for name, path in MODELS.items():
        proc = subprocess.run([sys.executable, "-m", "gankit.cli", "info", "--json", str(path)], capture_output=True,
                              text=True, timeout=120, check=True)
        info = json.loads(proc.stdout)
        served = dict(by_name[name])
        assert served.pop("name") == name
        assert served == info


def test_v2_metadata(client, gens):
    meta = client.get("/v2/models/per-digit").json()
    assert meta["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 100]},
                              {"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert client.get("/v2/models/per-digit/ready").json() == {"name": "per-digit", "ready": True}
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]


# -- same seed, same bytes ----------------------------------------------------------------

def test_same_seed_same_bytes_as_the_cli_and_the_library(client, gens, tmp_path):
    npy = tmp_path / "sevens.npy"
    subprocess.run([sys.executable, "-m", "gankit.cli", "generate", "--digit", "7", "-n", "16", "--seed", "3",
                    "--model", str(MODELS["conditional"]), "-o", str(npy)], check=True, capture_output=True,
                   timeout=120)
    served = client.get("/v1/generate", params={"digit": 7, "n": 16, "seed": 3, "format": "npy"})
    assert served.status_code == 200 and served.headers["x-gankit-seed"] == "3"
    assert served.content == npy.read_bytes()  # the very file bytes
    expected = gens["conditional"].generate(7, n=16, seed=3)
    assert np.array_equal(np.load(io.BytesIO(served.content)), expected)

    # The PNG grid (GET, as <img src> uses it) and JSON (POST) carry the same pixels.
    png = client.get("/v1/generate?digit=7&n=16&seed=3")
    assert png.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), make_grid(expected, 16))
    posted = client.post("/v1/generate", json={"digit": 7, "n": 16, "seed": 3, "format": "json"}).json()
    assert np.array_equal(np.asarray(posted["images"], dtype=np.uint8), expected)
    big = client.get("/v1/generate?digit=7&n=2&seed=3&scale=3")
    assert Image.open(io.BytesIO(big.content)).size == (3 * (2 * 30 + 2), 3 * 32)

    # Several digits: one row each, as `gankit generate --digit 1 --digit 2`; no digit: every digit.
    several = client.post("/v1/generate", json={"model": "per-digit", "digits": [1, 2], "n": 3, "seed": 2**64 - 1,
                                                "format": "npy"})
    assert np.array_equal(np.load(io.BytesIO(several.content)), gens["per-digit"].generate([1, 2], n=3, seed=2**64 - 1))
    every = client.get("/v1/generate", params={"model": "per-digit", "n": 2, "format": "npy", "seed": 5})
    assert np.array_equal(np.load(io.BytesIO(every.content)), gens["per-digit"].generate(list(range(10)), n=2, seed=5))


def test_concurrent_mixed_requests_each_get_their_own_images(server, gens):
    rng = np.random.default_rng(0)
    cases = [(str(rng.choice(list(MODELS))), int(rng.integers(0, 10)), int(rng.integers(1, 6)),
              int(rng.integers(0, 2**63))) for _ in range(48)]

    async def go():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            async def one(model, digit, n, seed):
                r = await c.get("/v1/generate", params={"model": model, "digit": digit, "n": n, "seed": seed,
                                                        "format": "npy"})
                assert r.status_code == 200, r.text
                return np.load(io.BytesIO(r.content))

            return await asyncio.gather(*[one(*case) for case in cases])

    before = _metric(server, "gankit_batch_requests_count")
    results = asyncio.run(go())
    for (model, digit, n, seed), images in zip(cases, results):
        assert np.array_equal(images, gens[model].generate(digit, n=n, seed=seed)), (model, digit, n, seed)
    runs = _metric(server, "gankit_batch_requests_count") - before
    assert runs < len(cases), "concurrent requests were never merged into one onnxruntime run"


def _metric(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_metrics_count_requests_images_and_batches(server, client):
    client.get("/v1/generate?digit=3&n=5&format=npy")
    client.get("/v1/generate?digit=42")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    for name in ("gankit_http_requests_total", "gankit_http_request_duration_seconds_bucket",
                 "gankit_images_generated_total", "gankit_batch_rows_bucket", "gankit_queue_depth",
                 "gankit_models_ready"):
        assert name in text, name
    assert re.search(r'gankit_http_requests_total\{method="GET",route="/v1/generate",status="422"\} [1-9]', text)
    assert re.search(r'gankit_images_generated_total\{model="conditional"\} [1-9]', text)


def test_cors_only_for_the_named_origin(client):
    ok = client.options("/v1/generate", headers={"Origin": "http://example.test",
                                                 "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://example.test"
    other = client.get("/healthz", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in other.headers


# -- bad input ------------------------------------------------------------------------------

def test_every_bad_input_gets_its_status_and_a_json_error(client):
    payload = _error(client.get("/v1/generate?digit=42"), 422)
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in payload["error"] and payload["valid_digits"] == list(range(10))
    _error(client.get("/v1/generate?digit=seven"), 422)
    assert _error(client.get("/v1/generate?model=nope"), 404)["models"] == ["conditional", "per-digit"]
    _error(client.get("/v2/models/nope"), 404)
    _error(client.get("/no/such/route"), 404)
    _error(client.delete("/v1/models"), 405)
    _error(client.post("/v1/generate", content=b"digit=7", headers={"content-type": "text/plain"}), 415)
    _error(client.post("/v1/generate", content=b"{", headers={"content-type": "application/json"}), 400)
    _error(client.post("/v1/generate", json=[7]), 400)
    assert _error(client.post("/v1/generate", json={"digit": 7, "n": MAX_N + 1}), 422)["max_n"] == MAX_N
    _error(client.post("/v1/generate", json={"digits": [1, 2], "n": MAX_N // 2 + 1}), 422)
    _error(client.get(f"/v1/generate?n={10**30}"), 422)
    _error(client.post("/v1/generate", json={"digit": 7, "n": 0}), 422)
    for seed in (-1, 2**64, 1.5, "3", True):
        _error(client.post("/v1/generate", json={"digit": 7, "seed": seed}), 422)
    _error(client.get("/v1/generate?seed=-1"), 422)
    _error(client.post("/v1/generate", json={"digit": 7, "digits": [1]}), 422)
    _error(client.post("/v1/generate", json={"digt": 7}), 422)
    _error(client.post("/v1/generate", json={"digit": 7, "format": "gif"}), 422)
    _error(client.post("/v1/generate", json={"digit": 7, "scale": 99}), 422)
    big = b'{"digit": 7, "pad": "' + b"x" * (600 * 1024) + b'"}'
    assert _error(client.post("/v1/generate", content=big, headers={"content-type": "application/json"}),
                  413)["max_body_bytes"] == 512 * 1024
    # The same cap without a Content-Length (chunked upload).
    _error(client.post("/v1/generate", content=iter([big[:300_000], big[300_000:]]),
                       headers={"content-type": "application/json"}), 413)


def test_v2_bad_tensors(client):
    z = [0.0] * 100

    def infer(body, **kw):
        return client.post("/v2/models/conditional/infer", json=body, **kw)

    good = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], "data": z},
                       {"name": "label", "datatype": "INT64", "shape": [1], "data": [7]}]}
    assert infer(good).status_code == 200
    wrong = [
        {"inputs": [good["inputs"][0]]},  # no label
        {"inputs": [dict(good["inputs"][0], shape=[1, 99]), good["inputs"][1]]},
        {"inputs": [dict(good["inputs"][0], datatype="FP64"), good["inputs"][1]]},
        {"inputs": [good["inputs"][0], dict(good["inputs"][1], data=[42])]},
        {"inputs": [good["inputs"][0], dict(good["inputs"][1], data=[7.5])]},
        {"inputs": [dict(good["inputs"][0], name="noise"), good["inputs"][1]]},
        {"inputs": [dict(good["inputs"][0], shape=[MAX_N + 1, 100], data=z * (MAX_N + 1)),
                    dict(good["inputs"][1], shape=[MAX_N + 1], data=[7] * (MAX_N + 1))]},
        {**good, "outputs": [{"name": "logits"}]},
    ]
    for body in wrong:
        _error(infer(body), 422)
    _error(client.post("/v2/models/conditional/infer", content=b"not json"), 400)
    _error(client.post("/v2/models/conditional/infer", json=good, headers={"content-type": "text/csv"}), 415)
    assert infer(good).json()["outputs"][0]["shape"] == [1, 1, 28, 28]


def test_tritonclient_against_the_server(server, gens):
    tritonclient_http = pytest.importorskip("tritonclient.http")
    host = server.url.removeprefix("http://")
    client = tritonclient_http.InferenceServerClient(url=host)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("conditional")
        meta = client.get_model_metadata("conditional")
        assert [i["name"] for i in meta["inputs"]] == ["z", "label"]
        for name in ("conditional", "per-digit"):
            gen = gens[name]
            z = gen.sample_latent(5, 11)
            labels = np.array([0, 3, 7, 9, 3], dtype=np.int64)
            expected = gen.generate_float(z, labels)  # Python onnxruntime, same file
            for binary in (True, False):
                inputs = [tritonclient_http.InferInput("z", list(z.shape), "FP32"),
                          tritonclient_http.InferInput("label", list(labels.shape), "INT64")]
                inputs[0].set_data_from_numpy(z, binary_data=binary)
                inputs[1].set_data_from_numpy(labels, binary_data=binary)
                outputs = [tritonclient_http.InferRequestedOutput("image", binary_data=binary)]
                result = client.infer(name, inputs, outputs=outputs, request_id=f"r-{binary}")
                image = result.as_numpy("image")
                assert image.dtype == np.float32 and image.shape == (5, 1, 28, 28)
                assert np.array_equal(image, expected), (name, binary, float(np.abs(image - expected).max()))
                assert result.get_response()["id"] == f"r-{binary}"
            # No outputs named: tritonclient asks for binary outputs; the uint8 pixels match generate().
            inputs = [tritonclient_http.InferInput("z", [5, 100], "FP32"),
                      tritonclient_http.InferInput("label", [5], "INT64")]
            inputs[0].set_data_from_numpy(z)
            inputs[1].set_data_from_numpy(labels)
            image = client.infer(name, inputs).as_numpy("image")
            assert np.array_equal(to_uint8(image, gen.card.value_range), to_uint8(expected, gen.card.value_range))
        with pytest.raises(Exception, match="not digits"):
            bad = [tritonclient_http.InferInput("z", [1, 100], "FP32"),
                   tritonclient_http.InferInput("label", [1], "INT64")]
            bad[0].set_data_from_numpy(np.zeros((1, 100), np.float32))
            bad[1].set_data_from_numpy(np.array([12], np.int64))
            client.infer("conditional", bad)
    finally:
        client.close()


# -- key, queue, drain, start-up ------------------------------------------------------------

def test_api_key_queue_full_and_drain_on_sigterm(gens):
    """One server with a key (from the environment), a queue of 1 and a 1.5 s batch wait."""
    key = "test-key-0123456789"
    srv = start_server(MODELS["conditional"], "--queue", "1", "--max-wait-ms", "1500", env={"GANKIT_API_KEY": key})
    try:
        assert key not in " ".join(srv.proc.args)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            # Health routes stay open; everything else needs the key.
            for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
                assert c.get(path).status_code == 200, path
            for path in ("/", "/docs", "/metrics", "/v1/models", "/v1/generate", "/openapi.json", "/v2/models/x"):
                response = c.get(path)
                assert "needs an API key" in _error(response, 401)["error"], path
                assert any(v.startswith("Basic") for v in response.headers.get_list("www-authenticate"))
            assert _error(c.get("/v1/models", headers={"Authorization": "Bearer wrong-key-123"}), 401)["error"] == \
                "wrong API key"
            assert c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
            assert c.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
            assert c.get("/", auth=("anyone", key)).status_code == 200  # a browser's Basic prompt

            # Queue of 1: the first request waits 1.5 s for company; a second one is refused with 503.
            # Then SIGTERM while the first is still in flight: it is answered in full, and the exit is 0.
            headers = {"X-API-Key": key}
            answers: dict = {}

            def first() -> None:
                answers["first"] = c.get("/v1/generate", params={"digit": 4, "n": 3, "seed": 9, "format": "npy"},
                                         headers=headers)

            thread = threading.Thread(target=first)
            thread.start()
            deadline = time.monotonic() + 10
            while _metric_keyed(srv, key, "gankit_queue_depth") < 1:
                assert time.monotonic() < deadline, "the first request never queued"
                time.sleep(0.02)
            with httpx.Client(base_url=srv.url, timeout=30) as other:
                refused = other.get("/v1/generate?digit=1", headers=headers)
            assert "--queue" in _error(refused, 503)["error"] and refused.headers["retry-after"] == "1"
            srv.proc.send_signal(signal.SIGTERM)
            thread.join(30)
            assert answers["first"].status_code == 200, answers["first"].text
            assert np.array_equal(np.load(io.BytesIO(answers["first"].content)),
                                  gens["conditional"].generate(4, n=3, seed=9))
            assert srv.proc.wait(30) == 0, srv.stderr
            assert "gankit serve: stopped" in "".join(srv.stdout)
            assert "Traceback" not in srv.stderr, srv.stderr
            port = int(srv.url.rsplit(":", 1)[1])
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        srv.stop()


def _metric_keyed(server, key: str, name: str) -> float:
    text = httpx.get(server.url + "/metrics", headers={"X-API-Key": key}).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_a_bad_model_stops_the_server_at_start_up(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(MODELS["conditional"].read_bytes()[:100_000])  # truncated
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "serve", str(MODELS["conditional"]), str(bad),
                           "--port", "0"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""  # never said it was ready, never served
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken.onnx" in lines[0], proc.stderr

    same_stem = tmp_path / "conditional.onnx"
    same_stem.write_bytes(MODELS["conditional"].read_bytes())
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "serve", str(MODELS["conditional"]), str(same_stem)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "both be served as 'conditional'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "serve", "--max-batch", "0"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--max-batch" in proc.stderr


def test_a_port_in_use_is_one_line_and_exit_1(server):
    port = server.url.rsplit(":", 1)[1]
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "serve", str(MODELS["per-digit"]), "--port", port],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot listen on 127.0.0.1:" + port), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
