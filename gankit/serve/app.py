"""The Starlette app of `gankit serve`: routes, errors, middleware and start-up.

Light tier plus the ``serve`` extra (Starlette, the Prometheus client); never torch.
`create_app(models, config)` joins the other modules: requests are parsed by
`protocol.params` and `protocol.oip`, run by each model's `batcher`, encoded by
`protocol.encode`; every refusal is an `ApiError`, answered as JSON with its status.
Middleware, outermost first: metrics (so refused requests are counted too), CORS (only
with ``--cors-origin``), the API key (only with a key). Routes:

* ``GET /`` the digit picker, ``GET /docs`` the API docs page, ``GET /openapi.json``,
  ``/static/*`` their assets (package data, nothing from a CDN);
* ``GET /healthz`` alive, ``GET /readyz`` models loaded and warmed up, ``GET /metrics``;
* ``GET /v1/models``; ``GET|POST /v1/generate``;
* the Open Inference Protocol: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{name}``, ``/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Mapping

from gankit.errors import GankitError
from gankit.serve.protocol import encode, oip, openapi, params
from gankit.serve.batcher import MicroBatcher, PerRequestDispatcher
from gankit.serve.config import ServeConfig
from gankit.serve.errors import ApiError, from_gankit_error
from gankit.serve.extra import require_serve_extra
from gankit.serve.models import ServedModel

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
    from starlette.routing import Match, Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError:  # a base install: create_app calls require_serve_extra first
    pass

WEB = Path(__file__).resolve().parent / "web"
JSON = "application/json"
# Bodies of more images than this are encoded on a worker thread, not on the event loop.
ENCODE_INLINE_MAX = 64
log = logging.getLogger("gankit.serve")


def _json(payload, status: int = 200, headers: Mapping[str, str] | None = None) -> "Response":
    return Response(json.dumps(payload).encode(), status_code=status, headers=headers, media_type=JSON)


def _media_type(request: "Request") -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: "Request", cap: int) -> bytes:
    """The request body, or 413 as soon as it is known to be over ``cap`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, f"Content-Length must be a whole number, got {declared!r}") from None
        if size > cap:
            raise ApiError(413, f"the body is {size} bytes; this server takes at most {cap}", max_body_bytes=cap)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"the body is over {cap} bytes, the most this server takes", max_body_bytes=cap)
        chunks.append(chunk)
    return b"".join(chunks)


class Api:
    """The handlers, with the state they share."""

    def __init__(self, models: dict[str, ServedModel], config: ServeConfig, metrics, version: str):
        self.models = models
        self.config = config
        self.metrics = metrics
        self.version = version
        self.default_model = next(iter(models))
        self.ready = False
        self.dispatchers = {}
        for name, model in models.items():
            hook = metrics.batch_hook(name)
            if config.dispatch == "batch":
                dispatcher = MicroBatcher(model, config.max_batch, config.max_wait_ms, config.queue, hook,
                                          workers=config.workers)
            else:
                dispatcher = PerRequestDispatcher(model, config.queue, hook)
            self.dispatchers[name] = dispatcher
            metrics.watch_queue(name, lambda d=dispatcher: d.depth)
        self.openapi = json.dumps(openapi.document(version, keyed=config.api_key is not None)).encode()
        self.pages = {name: (WEB / name).read_bytes() for name in ("index.html", "docs.html")}

    # -- start-up and shutdown ----------------------------------------------------------

    def lifespan(self, on_ready: Callable[[], None] | None):
        @contextlib.asynccontextmanager
        async def lifespan(app):
            for dispatcher in self.dispatchers.values():
                dispatcher.start()
            for dispatcher in self.dispatchers.values():
                await dispatcher.warm_up()
            self.ready = True
            self.metrics.ready.set(1)
            if on_ready is not None:
                on_ready()
            try:
                yield
            finally:
                # uvicorn has let the requests in flight finish; the batchers finish what is queued.
                self.ready = False
                self.metrics.ready.set(0)
                for dispatcher in self.dispatchers.values():
                    await dispatcher.stop()

        return lifespan

    async def _images(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.config.request_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"no answer from the model within {self.config.request_timeout_s:g} s") from None
        except GankitError as exc:
            raise from_gankit_error(exc) from None

    def _model(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise ApiError(404, f"no model named {name!r}; this server has {', '.join(self.models)}",
                           models=list(self.models))
        return model

    # -- pages and health ---------------------------------------------------------------

    async def index(self, request):
        return Response(self.pages["index.html"], media_type="text/html; charset=utf-8")

    async def docs(self, request):
        return Response(self.pages["docs.html"], media_type="text/html; charset=utf-8")

    async def openapi_json(self, request):
        return Response(self.openapi, media_type=JSON)

    async def healthz(self, request):
        return _json({"status": "alive"})

    async def readyz(self, request):
        if self.ready:
            return _json({"status": "ready", "models": list(self.models)})
        return _json({"status": "not ready", "models": list(self.models)}, 503)

    async def metrics_text(self, request):
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type)

    # -- /v1 ----------------------------------------------------------------------------

    async def list_models(self, request):
        return _json({"models": [model.info() for model in self.models.values()], "default": self.default_model,
                      "limits": self.config.limits()})

    async def generate_get(self, request):
        req = params.from_query(request.query_params.multi_items(), self.models, self.default_model,
                                self.config.max_n)
        return await self._generate(req)

    async def generate_post(self, request):
        media = _media_type(request)
        if media != JSON:
            raise ApiError(415, f"send the request as JSON (Content-Type: {JSON}), got {media or 'no content type'!r}")
        body = await read_body(request, self.config.max_body_bytes)
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc})") from None
        return await self._generate(params.from_json(data, self.models, self.default_model, self.config.max_n))

    async def _generate(self, req: params.GenerateRequest):
        images = await self._images(self.dispatchers[req.model.name].images(req.labels, req.seed))
        if len(images) > ENCODE_INLINE_MAX:
            body = await asyncio.get_running_loop().run_in_executor(None, encode.body, req.format, images, req)
        else:
            body = encode.body(req.format, images, req)
        headers = {"X-Gankit-Model": req.model.name, "X-Gankit-Seed": str(req.seed),
                   "X-Gankit-Images": str(len(images)), "Cache-Control": "no-store"}
        if req.format != "json":
            what = "-".join(map(str, req.digits)) if req.digits else "all"
            headers["Content-Disposition"] = f'inline; filename="digits-{what}-seed{req.seed}.{req.format}"'
        return Response(body, media_type=encode.MEDIA_TYPES[req.format], headers=headers)

    # -- /v2: the Open Inference Protocol -------------------------------------------------

    async def v2_server(self, request):
        return _json(oip.server_metadata(self.version))

    async def v2_live(self, request):
        return _json({"live": True})

    async def v2_ready(self, request):
        return _json({"ready": self.ready}, 200 if self.ready else 503)

    async def v2_model(self, request):
        return _json(self._model(request.path_params["name"]).oip_metadata())

    async def v2_model_ready(self, request):
        model = self._model(request.path_params["name"])
        return _json({"name": model.name, "ready": self.ready}, 200 if self.ready else 503)

    async def v2_infer(self, request):
        model = self._model(request.path_params["name"])
        header_length = request.headers.get(oip.HEADER_LENGTH)
        media = _media_type(request)
        allowed = ("", JSON, "application/octet-stream") if header_length is not None else ("", JSON)
        if media not in allowed:
            raise ApiError(415, f"send the inference request as JSON (Content-Type: {JSON}), or JSON plus binary "
                           f"tensors with an {oip.HEADER_LENGTH} header; got {media!r}")
        body = await read_body(request, self.config.max_body_bytes)
        infer = oip.parse_infer(body, header_length, model, self.config.max_n)
        image = await self._images(self.dispatchers[model.name].tensor(infer.z, infer.labels))
        payload, headers = oip.infer_response(model, infer, image)
        media_type = headers.pop("content-type")
        return Response(payload, media_type=media_type, headers=headers)


# -- errors -------------------------------------------------------------------------------

async def _api_error(request, exc: ApiError):
    return Response(exc.body(), status_code=exc.status, headers=exc.headers, media_type=JSON)


async def _gankit_error(request, exc: GankitError):
    return await _api_error(request, from_gankit_error(exc))


async def _http_error(request, exc: "HTTPException"):
    if exc.status_code == 404:
        message = f"no route {request.url.path}; see /docs or /openapi.json"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; use {exc.headers.get('Allow', 'GET')}"
    else:
        message = str(exc.detail)
    return await _api_error(request, ApiError(exc.status_code, message, headers=exc.headers))


async def _client_gone(request, exc: Exception):
    # The client closed the connection while sending its body: nobody is left to answer.
    return Response(b"", status_code=400)


async def _unexpected(request, exc: Exception):
    log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return await _api_error(request, ApiError(500, "internal server error"))


def _route_namer(routes) -> Callable[[dict], str]:
    def route_of(scope: dict) -> str:
        route = scope.get("route")
        if route is None:  # refused before routing (the key) or matched nothing
            for candidate in routes:
                if candidate.matches(scope)[0] == Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", None) or "unmatched"

    return route_of


def create_app(models: dict[str, ServedModel], config: ServeConfig, on_ready: Callable[[], None] | None = None):
    """The ASGI app serving ``models`` (name -> `ServedModel`, the first is the default)."""
    require_serve_extra()
    import gankit
    from gankit.serve.middleware.auth import ApiKeyMiddleware
    from gankit.serve.middleware.metrics import MetricsMiddleware, ServeMetrics

    if not models:
        raise ValueError("create_app needs at least one model")
    config = config.check()
    metrics = ServeMetrics()
    api = Api(models, config, metrics, gankit.__version__)
    routes = [
        Route("/", api.index),
        Route("/docs", api.docs),
        Route("/openapi.json", api.openapi_json),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics_text),
        Route("/v1/models", api.list_models),
        Route("/v1/generate", api.generate_get, methods=["GET"]),
        Route("/v1/generate", api.generate_post, methods=["POST"]),
        Route("/v2", api.v2_server),
        Route("/v2/health/live", api.v2_live),
        Route("/v2/health/ready", api.v2_ready),
        Route("/v2/models/{name}", api.v2_model),
        Route("/v2/models/{name}/ready", api.v2_model_ready),
        Route("/v2/models/{name}/infer", api.v2_infer, methods=["POST"]),
        Mount("/static", StaticFiles(directory=WEB), name="static"),
    ]
    middleware = [Middleware(MetricsMiddleware, metrics=metrics, route_of=_route_namer(routes))]
    if config.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", oip.HEADER_LENGTH],
            expose_headers=["X-Gankit-Seed", "X-Gankit-Model", "X-Gankit-Images", "Retry-After", oip.HEADER_LENGTH],
            max_age=600))
    if config.api_key is not None:
        middleware.append(Middleware(ApiKeyMiddleware, key=config.api_key))
    app = Starlette(routes=routes, middleware=middleware, lifespan=api.lifespan(on_ready),
                    exception_handlers={ApiError: _api_error, GankitError: _gankit_error, HTTPException: _http_error,
                                        ClientDisconnect: _client_gone, Exception: _unexpected})
    app.state.api = api
    return app
