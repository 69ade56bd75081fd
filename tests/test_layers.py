"""The package has one dependency direction and no import cycles, counting imports inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tinykws

ROOT = Path(tinykws.__file__).resolve().parent
# Lowest first: a stage may import the stages before it, never one after it.
LAYERS = ["checks", "outputs", "pretrained", "audio", "data", "models", "quant", "train", "deploy", "prune", "stream",
          "nas", "recipes", "pipeline", "cli", "__main__"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, mod: str | None = None) -> set[str]:
    """Every tinykws module that `path` (module `mod`) imports, wherever the import statement is."""
    mod = mod or module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tinykws"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tinykws":
                continue
            found.add(target)
            for a in node.names:  # `from . import x` imports the module x
                if (ROOT.parent / (target.replace(".", "/") + f"/{a.name}.py")).exists():
                    found.add(f"{target}.{a.name}")
    found.discard(mod)
    return found


def stage(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


GRAPH = {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}


def test_every_stage_has_a_layer():
    stages = {stage(m) for m in GRAPH} - {None}
    assert stages <= set(LAYERS), f"stages without a layer: {sorted(stages - set(LAYERS))}"


@pytest.mark.parametrize("mod", sorted(m for m in GRAPH if stage(m)))
def test_imports_go_down_the_stages(mod):
    here = LAYERS.index(stage(mod))
    upward = [t for t in GRAPH[mod] if stage(t) and LAYERS.index(stage(t)) > here]
    assert not upward, f"{mod} imports later stages: {sorted(upward)}"


def test_no_import_cycles():
    # a module importing one of its own parent packages is Python's normal package loading, not a cycle
    edges = {m: {t for t in ts if t in GRAPH and not m.startswith(t + ".")} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    """Guards the checks above: imports inside functions and relative imports are found."""
    src = tmp_path / "probe.py"
    src.write_text("def f():\n    from ..nas.search import x\n    from tinykws.cli import main\n    from . import blocks\n")
    found = imports_of(src, "tinykws.models.probe")
    assert {"tinykws.nas.search", "tinykws.cli", "tinykws.models.blocks"} <= found
