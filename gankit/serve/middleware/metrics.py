"""Prometheus metrics of `gankit serve`, kept with the official client (`prometheus_client`).

Light tier plus the ``serve`` extra. Each app has its own registry, so several apps in
one process (the tests) do not share counters. What is measured:

* ``gankit_http_requests_total{route, method, status}`` and
  ``gankit_http_request_duration_seconds{route}`` (a histogram), per route template
  (``/v2/models/{name}/infer``, not each URL), counted by `MetricsMiddleware`, so
  refused requests (401, 404, 503) count too;
* ``gankit_images_generated_total{model}``: images (rows) the model produced;
* ``gankit_batch_rows{model}`` and ``gankit_batch_requests{model}``: histograms of the
  rows and of the requests in each onnxruntime run; ``gankit_inference_seconds{model}``;
* ``gankit_queue_depth{model}``: requests waiting, read when scraped;
* ``gankit_models_ready``: 1 once the models are loaded and warmed up.
"""

from __future__ import annotations

import time
from typing import Callable

from gankit.serve.extra import require_serve_extra

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
except ImportError:  # a base install; `ServeMetrics` calls require_serve_extra first
    pass

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """The server's metrics in a registry of their own."""

    def __init__(self):
        require_serve_extra()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gankit_http_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("gankit_http_request_duration_seconds", "Time from request to the end of the "
                                 "response, by route template", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("gankit_images_generated", "Images (rows) produced by the model", ["model"], registry=r)
        self.batch_rows = Histogram("gankit_batch_rows", "Rows (images) per onnxruntime run", ["model"],
                                    buckets=ROW_BUCKETS, registry=r)
        self.batch_requests = Histogram("gankit_batch_requests", "Requests merged into one onnxruntime run",
                                        ["model"], buckets=REQUEST_BUCKETS, registry=r)
        self.inference = Histogram("gankit_inference_seconds", "Time of one batch on the worker thread",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("gankit_queue_depth", "Requests waiting for their model", ["model"], registry=r)
        self.ready = Gauge("gankit_models_ready", "1 once every model is loaded and warmed up", registry=r)

    def batch_hook(self, model: str) -> Callable[[int, int, float], None]:
        rows_h, requests_h, inference_h, images_c = (self.batch_rows.labels(model), self.batch_requests.labels(model),
                                                     self.inference.labels(model), self.images.labels(model))

        def hook(rows: int, requests: int, seconds: float) -> None:
            rows_h.observe(rows)
            requests_h.observe(requests)
            inference_h.observe(seconds)
            images_c.inc(rows)

        return hook

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(model).set_function(lambda: float(depth()))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app, metrics: ServeMetrics, route_of: Callable[[dict], str]):
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = self.route_of(scope)
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
