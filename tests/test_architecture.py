"""The layout's rules, read from the source: which room may import which, the tiers, no import loops, room sizes.

Every import counts, at module level or inside a function, because a lazy import still
ties two rooms together. The table `MAY_IMPORT` is the one in docs/architecture.md; a
new room or a new edge between rooms is a decision, made here and there together.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gankit"

# Room -> the rooms it may import (besides itself). A room is a top-level module or
# package of gankit, or a sub-package of gankit.training.
LIGHT_BASE = {"gankit.errors", "gankit.atomic", "gankit.contract", "gankit.inputs"}
MAY_IMPORT: dict[str, set[str]] = {
    "gankit": {"gankit.runtime"},
    "gankit.__main__": {"gankit.cli"},
    "gankit.errors": set(),
    "gankit.contract": {"gankit.inputs"},
    "gankit.atomic": {"gankit.errors"},
    "gankit.inputs": {"gankit.errors"},
    "gankit.images": LIGHT_BASE,
    "gankit.config": LIGHT_BASE,
    "gankit.presets": LIGHT_BASE | {"gankit.config"},
    "gankit.plugin_api": LIGHT_BASE | {"gankit.config"},
    "gankit.registry": LIGHT_BASE | {"gankit.config", "gankit.plugin_api"},
    "gankit.data": LIGHT_BASE,
    "gankit.eval": LIGHT_BASE | {"gankit"},
    "gankit.runtime": LIGHT_BASE | {"gankit.images"},
    "gankit.serve": LIGHT_BASE | {"gankit", "gankit.images", "gankit.runtime"},
    "gankit.testing": {"gankit.training.conformance"},
    "gankit.cli": None,  # the commands join everything, heavy rooms only inside a command (see TIERS)
    "gankit.training": set(),
    "gankit.training.nets": LIGHT_BASE | {"gankit.config", "gankit.plugin_api"},
    "gankit.training.persist": LIGHT_BASE | {"gankit", "gankit.config", "gankit.images"},
    "gankit.training.engine": LIGHT_BASE | {"gankit.config", "gankit.plugin_api", "gankit.registry", "gankit.eval",
                                            "gankit.images", "gankit.data", "gankit.training.nets",
                                            "gankit.training.persist"},
    "gankit.training.export": LIGHT_BASE | {"gankit", "gankit.config", "gankit.plugin_api", "gankit.registry",
                                            "gankit.images", "gankit.runtime", "gankit.training.nets",
                                            "gankit.training.engine", "gankit.training.persist"},
    "gankit.training.distributed": LIGHT_BASE | {"gankit.config", "gankit.training.engine",
                                                 "gankit.training.persist"},
    "gankit.training.conformance": LIGHT_BASE | {"gankit.config", "gankit.plugin_api", "gankit.registry",
                                                 "gankit.runtime", "gankit.training.nets", "gankit.training.engine",
                                                 "gankit.training.export", "gankit.training.persist"},
    "gankit.training.classifier": LIGHT_BASE | {"gankit.data", "gankit.eval"},
}
# Light rooms never import a heavy library at module level; gankit.cli's command modules
# reach the heavy rooms only inside the command function.
HEAVY_LIBS = {"torch", "onnx", "onnxscript", "safetensors", "matplotlib", "tensorboard"}
LIGHT_ROOMS = {room for room in MAY_IMPORT if not room.startswith("gankit.training")} - {"gankit.testing"}
MAX_MODULES_PER_FOLDER = 10
MAX_LINES_PER_FOLDER = 2500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "training":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def imports_of(module: str, top_level_only: bool = False) -> set[str]:
    """Every module ``module`` imports: gankit ones resolved to the deepest existing module."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(filter(None, [base, node.module or ""]))
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found - {module}


def test_every_module_belongs_to_a_declared_room():
    rooms = {room_of(m) for m in MODULES}
    assert rooms <= set(MAY_IMPORT), f"rooms without a rule: {sorted(rooms - set(MAY_IMPORT))}"


@pytest.mark.parametrize("room", sorted(r for r, allowed in MAY_IMPORT.items() if allowed is not None))
def test_rooms_import_only_what_their_rule_allows(room):
    broken = []
    for module in (m for m in MODULES if room_of(m) == room):
        for target in imports_of(module):
            if target.split(".")[0] != "gankit" or room_of(target) == room:
                continue
            if room_of(target) not in MAY_IMPORT[room]:
                broken.append(f"{module} imports {target}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("room", sorted(LIGHT_ROOMS))
def test_light_rooms_import_no_heavy_library_at_module_level(room):
    broken = []
    for module in (m for m in MODULES if room_of(m) == room):
        for target in imports_of(module, top_level_only=True):
            if target.split(".")[0] in HEAVY_LIBS or room_of(target).startswith("gankit.training."):
                broken.append(f"{module} imports {target} at module level")
    assert not broken, "\n".join(broken)


def test_runtime_never_reaches_evaluation():
    # Generating needs no metrics: not even lazily, inside a function.
    for module in (m for m in MODULES if room_of(m) == "gankit.runtime"):
        assert not {t for t in imports_of(module) if t.startswith("gankit.eval")}, module


def test_no_import_loops():
    graph = {m: {t for t in imports_of(m) if t in MODULES} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in graph:
        if v not in index:
            visit(v)
    assert not loops, loops


def test_no_folder_is_a_hall():
    for folder in sorted({p.parent for p in PACKAGE.rglob("*.py")}):
        files = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        lines = sum(len(p.read_text().splitlines()) for p in files)
        assert len(files) <= MAX_MODULES_PER_FOLDER, f"{folder}: {len(files)} modules"
        assert lines <= MAX_LINES_PER_FOLDER, f"{folder}: {lines} lines"


def test_every_sub_package_names_its_idea_and_tier():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 12, f"{init}: the docstring should say what the room is for"
        assert "tier" in doc.lower(), f"{init}: the docstring should name its tier"


PUBLIC_NAMES = {
    "gankit": ["load", "__version__"],
    "gankit.runtime": ["OnnxGenerator", "load_generator", "shipped_model_path", "default_threads", "model_sha256",
                       "check_seed", "MAX_MODEL_BYTES", "MAX_IMAGES", "MAX_CLASSES", "MAX_SEED"],
    "gankit.contract": ["ModelCard", "INPUT_Z", "INPUT_LABEL", "OUTPUT_IMAGE", "IMAGE_SIZE", "sample_latent"],
    "gankit.plugin_api": ["GanPlugin", "NetSpec", "Nets", "StepContext", "validate_plugin"],
    "gankit.testing": ["check_plugin", "CheckReport", "CheckResult", "PluginCheckError", "small_spec"],
    "gankit.data": ["Dataset", "default_dataset", "load_dataset"],
    "gankit.cli": ["app", "main"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC_NAMES))
def test_public_names_still_import(module):
    mod = importlib.import_module(module)
    for name in PUBLIC_NAMES[module]:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def test_plugin_author_names_resolve_in_their_rooms():
    pytest.importorskip("torch")
    import gankit.training as training

    for name in training.__all__:
        assert getattr(training, name) is not None, name
    from gankit.training.nets import build_nets  # the path the guide used to give still works

    assert build_nets is training.build_nets
