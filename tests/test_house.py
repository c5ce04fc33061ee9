"""The house: every module imports only from its own floor or below, no module imports
another in a circle, and no function in the library is longer than 60 lines.

The floors run from the foundations (errors, digests, boxes, the caches, images, ...) up through the paper's
stages (backbones, parsing, grounding, composition), the typed configuration, the
pipeline, evaluation and the sandbox, to the command line on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: Lowest first. A room (top-level module or sub-package of comclip) may import rooms on its
#: own floor or below, never above.
FLOORS = [
    ["errors", "bpe", "_optional", "_hf_utils", "world", "digests", "_moved", "_interrupt", "collector"],
    ["registry", "text", "jsonfile", "boxes", "cache", "similarity", "declared"],
    ["imaging", "testing"],
    ["backbones"],
    ["parsing"],
    ["grounding"],
    ["composition"],
    ["config", "methods", "results"],
    ["pipeline"],
    ["explain"],
    ["eval"],
    ["sandbox"],
    ["search"],
    ["app"],
    ["__init__"],
    ["cli", "__main__"],
]
FLOOR = {room: n for n, rooms in enumerate(FLOORS) for room in rooms}
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "comclip").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The comclip modules ``name`` imports (anywhere in the file, lazy imports included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                if node.level
                else (node.module or "")
            )
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_floor():
    rooms = {_room(m) for m in _modules()}
    assert rooms <= set(FLOOR), f"rooms without a floor: {sorted(rooms - set(FLOOR))}"


def test_no_import_runs_up_a_floor():
    modules = _modules()
    upward = [
        f"{name} -> {target}"
        for name, path in modules.items()
        for target in _imports(name, path, set(modules))
        if FLOOR[_room(target)] > FLOOR[_room(name)]
    ]
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # a package's __init__ re-exporting its own modules is not a circle
    graph = {m: {t for t in ts if not (m != "comclip" and t.startswith(m + "."))} for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                return trail + [node, target]
            if target not in state and (cycle := visit(target, trail + [node])):
                return cycle
        state[node] = 2
        return None

    for name in graph:
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, " -> ".join(cycle)


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in (SRC / "comclip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
            ):
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert not long, long


def test_cli_command_modules_import_no_other_command():
    modules = _modules()
    commands = {m for m in modules if m.startswith("comclip.cli.") and m not in ("comclip.cli.options", "comclip.cli.__main__")}
    for name in commands:
        assert not (_imports(name, modules[name], set(modules)) & commands), name


def test_inference_never_imports_the_trainer():
    modules = _modules()
    importers = [name for name, path in modules.items() if "comclip.sandbox.training" in _imports(name, path, set(modules))]
    assert importers == ["comclip.cli.sandbox"]
