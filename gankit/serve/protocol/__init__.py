"""What travels over HTTP for `gankit serve`: requests parsed and checked, bodies encoded.

Light tier (numpy, Pillow, standard library); never torch, and no web framework either:
these modules take and give plain Python values and bytes, so the app in
`gankit.serve.app` stays a thin layer over them.

* `params`: the ``/v1/generate`` request (JSON body or query string);
* `encode`: images to PNG, .npy and JSON bodies;
* `oip`: Open Inference Protocol (KServe v2) tensors, JSON and binary;
* `openapi`: the OpenAPI document served at ``/openapi.json``.
"""
