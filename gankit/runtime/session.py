"""onnxruntime sessions: thread counts, session options, the capped memory arena, execution providers, and one-line error text.

Light tier (onnxruntime, imported on first use so that importing gankit stays fast).
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

from gankit.errors import UsageError

# onnxruntime's CPU memory for all sessions of this process together (weights, activations,
# outputs). A CHUNK of the shipped conditional DCGAN needs ~60 MB; a hostile graph asking
# for tens of GB gets an error from the capped arena instead of the machine's memory.
ARENA_BYTES = 2 << 30
# Constant folding (graph optimisation, when a session is made) runs the graph's constant
# part; a file can make that part produce huge tensors (a ConstantOfShape of a size it
# chooses, then a chain over it) and hold session creation for minutes, where no run
# option can stop it. Folding stops at outputs of this size: the per-class weight slices
# of the shipped per-digit model are 0.8 MB (folded, generating a batch of 1024 took the
# same time as with no cap; with folding off it was ~1.6x slower).
FOLD_MAX_BYTES = 1 << 20


def default_threads() -> int:
    """Intra-op threads for a session: the CPUs this process may use, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 8))


def _session_options(threads: int, optimized: bool = True, fold: bool = True):
    """Session options for gankit's models; ``optimized=False`` turns graph optimisation off
    (no constant folding: what the load check's first session needs, see `load_generator`),
    ``fold=False`` only constant folding."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Measured on the project's 2-core machines (bench/bench_generate.py --sweep): a batch
    # of 1024 costs the same CPU time on 1 or 2 threads, so 2 threads nearly halve its wall
    # time on an idle machine, and batch 1 is unaffected (~0.24 ms). Spinning threads
    # only burn a core while waiting: with other work on the machine they made batch 1024
    # 30-40% slower, so they are off. Graph optimisation level made no measurable
    # difference for these MLPs (session creation ~6 ms CPU at every level); ALL is kept
    # for the per-class graphs, whose per-class weight slices it constant-folds.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    # Read by onnxruntime >= 1.27; older ones ignore it (and rely on `fold=False`, see load_generator).
    opts.add_session_config_entry("optimization.constant_folding_max_output_size_in_bytes", str(FOLD_MAX_BYTES))
    # Failures come back as exceptions and are reported as one line; onnxruntime's own log
    # would print them a second time, with C++ source locations, and its warnings (unused
    # initializers) are not the user's business either.
    opts.log_severity_level = 4
    # Only the protobuf parser: an ORT-format (flatbuffer) file is never a gankit model.
    opts.add_session_config_entry("session.load_model_format", "ONNX")
    _register_capped_arena()
    opts.add_session_config_entry("session.use_env_allocators", "1")
    return opts


_ARENA_REGISTERED = False


def _register_capped_arena() -> None:
    """Give this process one CPU arena of at most `ARENA_BYTES`, shared by every session."""
    global _ARENA_REGISTERED
    if _ARENA_REGISTERED:
        return
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        # max_mem, then -1 for the defaults of extend strategy, initial chunk and dead bytes.
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(ARENA_BYTES, -1, -1, -1))
    except Exception as exc:  # someone else in this process registered one first: use theirs
        if "already" not in str(exc).lower():
            raise
    _ARENA_REGISTERED = True


def _describe(args) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else (d or "?") for d in a.shape]}
            for a in args]

_ORT_SOURCE = re.compile(r"\S*onnxruntime\S*\.(?:cc|cpp|h):\d+ (?:[\w:~<>*&]+\([^()]*\)(?: const)? )?")
_DETAIL_HEAD, _DETAIL_TAIL = 200, 600


def _ort_detail(exc: BaseException) -> str:
    """onnxruntime's message on one line, without its C++ source locations.

    The cause ("Unsupported model IR version: 10, max supported IR version: 9") comes last,
    after a long function signature, so a long message keeps its head and its tail.
    """
    text = _ORT_SOURCE.sub("", " ".join(str(exc).split())) or type(exc).__name__
    if len(text) > _DETAIL_HEAD + _DETAIL_TAIL:
        text = f"{text[:_DETAIL_HEAD]} ... {text[-_DETAIL_TAIL:]}"
    return text


def _check_providers(providers) -> list:
    import onnxruntime as ort

    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence) or not providers:
        raise UsageError(f"providers must be a non-empty list of execution provider names, got {providers!r}")
    available = ort.get_available_providers()
    checked = []
    for entry in providers:
        if isinstance(entry, str):
            name, options = entry, None
        elif (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
              and isinstance(entry[1], dict)):
            name, options = entry
        else:
            raise UsageError(f"a provider is a name or a (name, options dict) pair, got {entry!r}")
        if name not in available:
            raise UsageError(f"execution provider {name!r} is not available in this onnxruntime "
                             f"(available: {', '.join(available)})")
        checked.append(name if options is None else (name, options))
    return checked
