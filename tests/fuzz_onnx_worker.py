"""Worker for tests/test_fuzz_onnx.py: load mutated copies of one model, report each outcome.

Run as ``python fuzz_onnx_worker.py MODEL FOLDER SEED FIRST LAST``. For each case it
prints ``start I`` before the attempt and ``done I OUTCOME`` after, flushed, so that the
parent can tell which case crashed the process (killed by a signal) or hung. OUTCOME is
``ok`` (loaded and generated), ``refused`` (a GankitError: the one clear line) or
``traceback:TYPE: message`` (anything else, which is a bug).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Bit flips, byte overwrites, a truncation, or a cut-and-splice, like disk or transfer damage."""
    out = bytearray(data)
    kind = rng.choice(["flip", "flip", "bytes", "truncate", "splice"])
    if kind == "flip":
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        at = rng.randrange(len(out))
        out[at:at + 4] = bytes(rng.randrange(256) for _ in range(4))
    elif kind == "truncate":
        del out[rng.randrange(len(out)):]
    else:
        a, b = sorted(rng.randrange(len(out)) for _ in range(2))
        out[a:a] = out[b:b + rng.randrange(1, 64)]
    # Half the cases carry a recomputed weights hash, so onnxruntime runs the damaged graph
    # instead of the hash check refusing it first.
    if rng.random() < 0.5:
        from gankit.runtime import model_sha256

        old = _stored_hash(data)
        try:
            new = model_sha256(bytes(out)).encode()
        except ValueError:
            return bytes(out)
        if old and out.count(old) == 1:
            out = out.replace(old, new)
    return bytes(out)


def _stored_hash(data: bytes) -> bytes | None:
    key = b"gankit.weights_sha256"
    at = data.find(key)
    # StringStringEntryProto: key, then field 2 with a 64-byte hex value
    if at < 0 or data[at + len(key):at + len(key) + 2] != b"\x12\x40":
        return None
    return data[at + len(key) + 2:at + len(key) + 66]


def main() -> None:
    model, folder, seed, first, last = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    from gankit.errors import GankitError
    from gankit.runtime import load_generator

    data = Path(model).read_bytes()
    for case in range(first, last):
        rng = random.Random(seed * 1_000_003 + case)
        path = folder / f"case{case % 4}.onnx"
        path.write_bytes(mutate(data, rng))
        print(f"start {case}", flush=True)
        try:
            gen = load_generator(path, threads=1)
            gen.generate(None, n=3, seed=case)
            outcome = "ok"
        except GankitError as exc:
            outcome = "refused" if "\n" not in str(exc) else "traceback:multi-line message"
        except BaseException as exc:  # noqa: BLE001 - any other exception is the bug being looked for
            outcome = f"traceback:{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        print(f"done {case} {outcome}", flush=True)


if __name__ == "__main__":
    main()
