"""The OpenAPI 3.1 document of `gankit serve`, served at ``/openapi.json``.

Light tier (standard library). Written out here, next to nothing else, because the app
is plain Starlette (no schema generator); tests/test_serve_api.py checks that every route
of the app is in it and every path in it is a route. The page at ``/docs`` (web/docs.html)
renders it offline and can send each request.
"""

from __future__ import annotations

from typing import Any

from gankit.serve.protocol.params import DEFAULT_N, FORMATS, MAX_SCALE

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Malformed body", 401: "Missing or wrong API key", 404: "Unknown model",
            413: "Body over the cap", 415: "Wrong content type", 422: "Impossible request (digit, n, seed, shape)",
            500: "The model failed", 503: "Queue full (Retry-After) or shutting down", 504: "Timed out"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_IMAGES = {
    "description": "The images: a PNG grid (one row per digit), a .npy file (uint8 [N, 28, 28]), or JSON",
    "headers": {"X-Gankit-Seed": {"schema": {"type": "string"}, "description": "The seed used"},
                "X-Gankit-Model": {"schema": {"type": "string"}}},
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/Images"}}},
}

_QUERY = [
    {"name": "model", "in": "query", "schema": {"type": "string"}, "description": "Model name (default: the first)"},
    {"name": "digit", "in": "query", "schema": {"type": "integer"}, "example": 7,
     "description": "A digit; repeat it, or use digits=1,2,3, for one grid row each. None: every digit"},
    {"name": "digits", "in": "query", "schema": {"type": "string"}, "description": "Comma-separated digits"},
    {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_N}, "example": 16},
    {"name": "seed", "in": "query", "schema": {"type": "string", "default": "0"}, "example": "3",
     "description": "0 to 2**64-1, or 'random'"},
    {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS), "default": "png"}},
    {"name": "scale", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SCALE, "default": 1}},
]

_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "example": "conditional"}]

_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"],
           "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                          "datatype": {"type": "string"}, "data": {"type": "array"},
                          "parameters": {"type": "object"}}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "status"],
              "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
    "GenerateRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {"model": {"type": "string"}, "digit": {"type": "integer"},
                       "digits": {"type": "array", "items": {"type": "integer"}},
                       "n": {"type": "integer", "minimum": 1, "default": DEFAULT_N},
                       "seed": {"type": ["integer", "null"], "minimum": 0, "default": 0},
                       "format": {"type": "string", "enum": list(FORMATS), "default": "png"},
                       "scale": {"type": "integer", "minimum": 1, "maximum": MAX_SCALE, "default": 1}},
        "example": {"digit": 7, "n": 16, "seed": 3, "format": "json"}},
    "Images": {"type": "object",
               "properties": {"model": {"type": "string"}, "digits": {"type": ["array", "null"]},
                              "n": {"type": "integer"}, "seed": {"type": "integer"},
                              "labels": {"type": "array", "items": {"type": "integer"}},
                              "columns": {"type": "integer"}, "shape": {"type": "array"},
                              "images": {"type": "array", "description": "[N][28][28] grey levels 0-255"}}},
    "InferRequest": {"type": "object", "required": ["inputs"],
                     "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR},
                                    "outputs": {"type": "array"}, "parameters": {"type": "object"}},
                     "example": {"inputs": [
                         {"name": "z", "datatype": "FP32", "shape": [1, 100], "data": [0.0] * 100},
                         {"name": "label", "datatype": "INT64", "shape": [1], "data": [7]}]}},
    "InferResponse": {"type": "object",
                      "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                                     "id": {"type": "string"}, "outputs": {"type": "array", "items": _TENSOR}}},
}


def document(version: str, keyed: bool) -> dict[str, Any]:
    """The OpenAPI document; ``keyed``: the server needs an API key (all but the health routes)."""
    def op(summary: str, responses: dict[str, Any], tag: str, **more: Any) -> dict[str, Any]:
        return {"summary": summary, "tags": [tag], "responses": responses, **more}

    ok = {"description": "OK"}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "gankit serve", "version": version,
                 "description": "Generate handwritten digits with exported gankit models (docs/serving.md)."},
        "paths": {
            "/": {"get": op("The digit-picker page", {"200": {"description": "HTML"}}, "page")},
            "/docs": {"get": op("This document, rendered (offline)", {"200": {"description": "HTML"}}, "page")},
            "/openapi.json": {"get": op("This document", {"200": ok}, "page")},
            "/healthz": {"get": op("Alive", {"200": ok}, "health", security=[])},
            "/readyz": {"get": op("Models loaded and warmed up", {"200": ok, "503": {"description": "Not ready"}},
                                  "health", security=[])},
            "/metrics": {"get": op("Prometheus metrics (text format)", {"200": ok, **_errors(401)}, "health")},
            "/v1/models": {"get": op("Each model's card, as `gankit info --json` shows it", {"200": ok, **_errors(401)},
                                     "v1")},
            "/v1/generate": {
                "get": op("Generate digits (for curl and <img src>)", {"200": _IMAGES, **_errors(401, 404, 422, 503)},
                          "v1", parameters=_QUERY),
                "post": op("Generate digits", {"200": _IMAGES, **_errors(400, 401, 404, 413, 415, 422, 503)}, "v1",
                           requestBody={"required": True, "content": {"application/json": {
                               "schema": {"$ref": "#/components/schemas/GenerateRequest"}}}}),
            },
            "/v2": {"get": op("Server metadata (Open Inference Protocol)", {"200": ok}, "v2")},
            "/v2/health/live": {"get": op("Alive", {"200": ok}, "v2", security=[])},
            "/v2/health/ready": {"get": op("Ready", {"200": ok, "503": {"description": "Not ready"}}, "v2",
                                           security=[])},
            "/v2/models/{name}": {"get": op("Model metadata: input and output tensors", {"200": ok, **_errors(404)},
                                            "v2", parameters=_NAME)},
            "/v2/models/{name}/ready": {"get": op("Model ready", {"200": ok, **_errors(404)}, "v2", parameters=_NAME)},
            "/v2/models/{name}/infer": {"post": op(
                "Run the model on raw tensors z FP32 [N, Z] and label INT64 [N]; JSON or binary tensor data",
                {"200": _json({"$ref": "#/components/schemas/InferResponse"}, "The image tensor FP32 [N, 1, 28, 28]"),
                 **_errors(400, 401, 404, 413, 415, 422, 503)}, "v2", parameters=_NAME,
                requestBody={"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})},
        },
        "components": {"schemas": SCHEMAS},
    }
    if keyed:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "basic": {"type": "http", "scheme": "basic", "description": "any user name, the key as password"}}
        doc["security"] = [{"bearer": []}, {"apiKey": []}, {"basic": []}]
    return doc
