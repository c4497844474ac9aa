"""Fuzzing the ONNX loader: mutated model bytes give a gankit error or a working model, never more.

* hypothesis mutates a small exported model in this process: only `GankitError` may escape;
* a mutation loop over the shipped model runs in worker subprocesses, so that a native
  crash of onnxruntime (a signal) counts as a failure, and a case that stops making
  progress for `HANG_SECONDS` counts as a hang.

CI runs a small fixed number of cases (seconds). ``GANKIT_FUZZ=N`` runs N hypothesis
examples and N loop cases (the long run); the loop prints its counts.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gankit.errors import GankitError
from gankit.runtime import load_generator, shipped_model_path
from helpers_models import exported_models

FUZZ = int(os.environ.get("GANKIT_FUZZ", "0"))
CASES = settings(max_examples=FUZZ or 25, deadline=None, derandomize=not FUZZ,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LOOP_CASES = FUZZ or 24
HANG_SECONDS = 60
WORKER = Path(__file__).with_name("fuzz_onnx_worker.py")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> bytes:
    return exported_models(tmp_path_factory.mktemp("models"))["conditional"].read_bytes()


def _load_or_refuse(path: Path) -> None:
    try:
        gen = load_generator(path, threads=1)
    except GankitError as exc:
        assert "\n" not in str(exc)
        return
    gen.generate(None, n=2)


@CASES
@given(edits=st.lists(st.tuples(st.sampled_from(["flip", "byte", "truncate", "delete"]), st.floats(0, 1),
                                st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_small_model_raises_only_gankit_errors(small_model, tmp_path_factory, edits):
    data = bytearray(small_model)
    for kind, where, value in edits:
        if not data:
            break
        at = min(int(where * len(data)), len(data) - 1)
        if kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif kind == "byte":
            data[at] = value
        elif kind == "truncate":
            del data[at:]
        else:
            del data[at:at + 1 + value]
    path = tmp_path_factory.mktemp("fuzz") / "m.onnx"
    path.write_bytes(bytes(data))
    _load_or_refuse(path)


@CASES
@given(data=st.binary(max_size=2000))
def test_random_bytes_raise_only_gankit_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "r.onnx"
    path.write_bytes(data)
    with pytest.raises(GankitError):
        load_generator(path)


@CASES
@given(mutation=st.sampled_from(["ir_version", "opset", "metadata_key", "metadata_value", "input_type", "doc"]),
       value=st.integers(-2**63, 2**63 - 1), text=st.text(max_size=40))
def test_structurally_valid_but_wrong_models_raise_only_gankit_errors(small_model, tmp_path_factory,
                                                                      mutation, value, text):
    """Mutations through the onnx API: well-formed protobuf with wrong contents."""
    model = onnx.load_from_string(small_model)
    if mutation == "ir_version":
        model.ir_version = value
    elif mutation == "opset":
        model.opset_import[0].version = value
    elif mutation == "metadata_key":
        model.metadata_props[value % len(model.metadata_props)].key = text
    elif mutation == "metadata_value":
        model.metadata_props[value % len(model.metadata_props)].value = text
    elif mutation == "input_type":
        model.graph.input[value % 2].type.tensor_type.elem_type = value % 30
    else:
        model.doc_string = text
    path = tmp_path_factory.mktemp("fuzz") / "s.onnx"
    path.write_bytes(model.SerializeToString())
    _load_or_refuse(path)


def run_mutation_loop(model: Path, cases: int, folder: Path, seed: int = 0) -> Counter:
    """Run cases 0..cases-1 in worker processes; restart a worker after a crash or hang."""
    counts: Counter = Counter()
    problems: list[str] = []
    case = 0
    while case < cases:
        proc = subprocess.Popen([sys.executable, str(WORKER), str(model), str(folder), str(seed), str(case), str(cases)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        started, last = None, time.monotonic()
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                last = time.monotonic()
                tag, number, *rest = line.rstrip("\n").split(" ", 2)
                if tag == "start":
                    started = int(number)
                else:
                    outcome = rest[0]
                    kind = "traceback" if outcome.startswith("traceback") else outcome
                    counts[kind] += 1
                    if kind == "traceback":
                        problems.append(f"case {number}: {outcome}")
                    started, case = None, int(number) + 1
            elif time.monotonic() - last > HANG_SECONDS:
                proc.kill()
                counts["hang"] += 1
                problems.append(f"case {started}: no progress for {HANG_SECONDS} s")
                case = (started if started is not None else case) + 1
                break
        code = proc.wait()
        stderr = proc.stderr.read()
        if code < 0 and started is not None:  # killed by a signal mid-case: a native crash
            counts["crash"] += 1
            problems.append(f"case {started}: worker died of signal {-code}: {stderr[-300:]}")
            case = started + 1
        elif code != 0 and counts["hang"] == 0 and started is not None:
            counts["traceback"] += 1
            problems.append(f"case {started}: worker exited {code}: {stderr[-300:]}")
            case = started + 1
    counts["cases"] = cases
    counts["problems"] = problems  # type: ignore[assignment]
    return counts


def test_mutation_loop_over_the_shipped_model_in_subprocesses(tmp_path):
    model = shipped_model_path()
    started = time.perf_counter()
    counts = run_mutation_loop(model, LOOP_CASES, tmp_path, seed=int(os.environ.get("GANKIT_FUZZ_SEED", "0")))
    problems = counts.pop("problems")
    summary = (f"{counts['cases']} cases in {time.perf_counter() - started:.0f} s: {counts['refused']} refused, "
               f"{counts['ok']} loaded, {counts['traceback']} tracebacks, {counts['crash']} crashes, "
               f"{counts['hang']} hangs")
    print(summary)
    assert not problems, summary + "\n" + "\n".join(problems[:20])
    assert counts["refused"] + counts["ok"] == counts["cases"]
