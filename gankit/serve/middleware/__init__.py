"""Plain ASGI middleware of `gankit serve`: the API key and the Prometheus metrics.

Light tier plus the ``serve`` extra (the Prometheus client, imported in a ``try`` block
so that a base install still imports these modules); never torch.

* `auth`: with a key set, every route but the health ones needs it;
* `metrics`: requests, latency, images, batch sizes and queue depth.
"""
