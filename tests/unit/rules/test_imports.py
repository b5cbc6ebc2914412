"""rules/ imports its own modules at the top of each module only, and they form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

RULES = Path(__file__).resolve().parents[3] / "rules"


def _module(path: Path) -> str:
    parts = path.relative_to(RULES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(RULES.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = set(tree.body)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rules"):
                assert node in top, f"{path}:{node.lineno}: import of {node.module} inside a function"
                deps.add(str(node.module))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("rules"):
                        assert node in top, f"{path}:{node.lineno}: import of {alias.name} inside a function"
                        deps.add(alias.name)
        graph[_module(path)] = deps
    return graph


def test_no_import_cycle_among_the_rules_modules() -> None:
    graph = _imports()
    assert {"rules.cel.parser", "rules.check", "rules.pack", "rules.stats"} <= set(graph)
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import cycle: {' -> '.join((*path, mod))}"
        if mod in done:
            return
        for dep in graph.get(mod, ()):
            visit(dep, (*path, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
