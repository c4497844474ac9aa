"""`gankit serve`: an HTTP API, a digit-picker page and a static in-browser export.

Light tier: numpy, onnxruntime and Pillow, plus the ``serve`` extra (Starlette, uvicorn,
the Prometheus client); never torch. Every module here imports without the extra, so
that a base install can still list and import gankit's modules; only building the app
(`gankit.serve.app.create_app`) and running it (`gankit.serve.server.serve`) need it,
and say how to install it when it is missing (`gankit.serve.extra`).

One job per module:

* `config`: the server's settings (`ServeConfig`) and their checks;
* `models`: loading the models to serve, each named by its file stem, and their cards;
* `batcher`: micro-batching, many requests' rows in one onnxruntime run off the event loop;
* `errors`: the one JSON error shape and its statuses; `extra`: is the extra installed;
* `protocol/`: what travels over HTTP, framework-free: the ``/v1/generate`` request
  (`params`), PNG/.npy/JSON bodies (`encode`), Open Inference Protocol tensors (`oip`),
  the OpenAPI document (`openapi`);
* `middleware/`: the API key (`auth`) and Prometheus metrics (`metrics`), plain ASGI;
* `app`: the Starlette app that joins them; `server`: uvicorn, start-up and draining;
* `webexport`: the static folder that runs a model in the browser with onnxruntime-web;
* ``web/``: the page at ``/``, the offline API docs page and the export's page.
"""

from __future__ import annotations

from gankit.serve.config import ServeConfig

__all__ = ["ServeConfig"]
