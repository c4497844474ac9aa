"""The ``/v1/generate`` request: read from a JSON body or a query string, then checked.

Light tier (numpy). Both forms become one `GenerateRequest`, checked in this order so
that the caller hears about the most basic problem first: unknown fields (422), the
model (404), the format, n and the image count against ``--max-n``, the seed, and the
digits, which the model itself checks (`OnnxGenerator.labels_for`: 422 naming the digits
it can draw). The labels are the runtime's own, so a request means exactly what
`gankit generate` and `gankit.load().generate()` mean by the same words:

* ``digit`` (one) or ``digits`` (several, one grid row each); neither means every digit
  the model knows, one row each, as `gankit generate` without ``--digit`` does. An
  unconditional model takes neither.
* ``n`` images per digit (default 8, as ``gankit generate -n``); ``seed`` (default 0, as
  ``gankit generate --seed``; ``null`` or ``random`` draws one, reported back).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from gankit.errors import UsageError
from gankit.runtime import check_seed
from gankit.serve.errors import ApiError
from gankit.serve.models import ServedModel

FORMATS = ("png", "npy", "json")
FIELDS = ("model", "digit", "digits", "n", "seed", "format", "scale")
DEFAULT_N = 8
DEFAULT_SEED = 0
MAX_SCALE = 16
# Columns of an unconditional grid, as `gankit generate` draws it.
UNCONDITIONAL_COLUMNS = 8


@dataclass(frozen=True)
class GenerateRequest:
    """A checked request: which model, which labels, which seed, which body."""

    model: ServedModel
    digits: tuple[int, ...] | None
    n: int
    seed: int
    format: str
    scale: int
    labels: np.ndarray

    @property
    def columns(self) -> int:
        """Images per grid row: n per digit, or up to 8 for an unconditional model."""
        return self.n if self.digits else min(self.n, UNCONDITIONAL_COLUMNS)


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, f"{name} must be a whole number, got {value!r}")
    return value


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise ApiError(422, f"{name} must be a whole number, got {text!r}") from None


def build(raw: Mapping[str, Any], models: Mapping[str, ServedModel], default_model: str, max_n: int
          ) -> GenerateRequest:
    """Check the fields of one request (already typed, as JSON gives them)."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}")
    name = raw.get("model", default_model)
    if not isinstance(name, str):
        raise ApiError(422, f"model must be a model name (a string), got {name!r}")
    model = models.get(name)
    if model is None:
        raise ApiError(404, f"no model named {name!r}; this server has {', '.join(models)}", models=list(models))

    fmt = raw.get("format", "png")
    if fmt not in FORMATS:
        raise ApiError(422, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    scale = _whole("scale", raw.get("scale", 1))
    if not 1 <= scale <= MAX_SCALE:
        raise ApiError(422, f"scale must be from 1 to {MAX_SCALE}, got {scale}")

    if "digit" in raw and "digits" in raw:
        raise ApiError(422, "give either digit (one) or digits (a list), not both")
    digits: list[Any] | None
    if "digits" in raw:
        digits = raw["digits"]
        if not isinstance(digits, list) or not digits:
            raise ApiError(422, f"digits must be a non-empty list of whole numbers, got {digits!r}")
    elif raw.get("digit") is not None:
        digits = [raw["digit"]]
    else:
        digits = None

    n = _whole("n", raw.get("n", DEFAULT_N))
    if n < 1:
        raise ApiError(422, f"n must be at least 1, got {n}")
    total = n * (len(digits) if digits else 1)
    if total > max_n:
        what = f"n={n} asks for {n}"
        if digits and len(digits) > 1:
            what = f"n={n} for {len(digits)} digits asks for {total}"
        raise ApiError(422, f"{what} images; this server gives at most {max_n} per request (--max-n)", max_n=max_n)

    seed = raw.get("seed", DEFAULT_SEED)
    if seed is None:
        seed = secrets.randbits(63)
    try:
        seed = check_seed(seed)
    except UsageError as exc:
        raise ApiError(422, str(exc)) from None

    if digits is None and model.generator.conditional:
        digits = list(model.classes)  # as `gankit generate` without --digit: one row per class
    try:
        labels = model.generator.labels_for(digits, n)
    except UsageError as exc:
        raise ApiError(422, str(exc), valid_digits=model.classes if model.generator.conditional else []) from None
    checked = tuple(int(d) for d in digits) if digits else None
    return GenerateRequest(model, checked, n, seed, fmt, scale, labels)


def from_json(body: Any, models: Mapping[str, ServedModel], default_model: str, max_n: int) -> GenerateRequest:
    """A request from a parsed JSON body (an object)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(body).__name__}")
    return build(body, models, default_model, max_n)


def from_query(items: Iterable[tuple[str, str]], models: Mapping[str, ServedModel], default_model: str,
               max_n: int) -> GenerateRequest:
    """A request from query parameters: ``digit=7`` (repeatable) or ``digits=1,2,3``, ``n``, ``seed``..."""
    raw: dict[str, Any] = {}
    digits: list[int] = []
    for key, value in items:
        if key in ("digit", "digits"):
            digits.extend(_parse_int(key, part) for part in value.split(",") if part.strip() or not value)
            raw.setdefault("_digit_keys", set()).add(key)
        elif key in raw:
            raise ApiError(422, f"{key} is given twice")
        elif key in ("n", "scale"):
            raw[key] = _parse_int(key, value)
        elif key == "seed":
            raw[key] = None if value.strip() == "random" else _parse_int(key, value)
        else:
            raw[key] = value
    keys = raw.pop("_digit_keys", set())
    if len(keys) > 1:
        raise ApiError(422, "give either digit (one) or digits (a list), not both")
    if digits:
        raw["digits"] = digits
    return build(raw, models, default_model, max_n)
