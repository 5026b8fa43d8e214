"""The import graph: no cycle among tada's modules, and the one-way arrows of docs/architecture.md hold.

Every import statement counts, including those under ``if TYPE_CHECKING:`` and inside functions.
"""

import ast
from pathlib import Path

import tada

ROOT = Path(tada.__file__).parent

#: layer -> the layers it may import (besides itself); the table of docs/architecture.md.
ALLOWED = {
    "errors": set(),
    "audio": {"errors"},
    "progress": set(),
    "runs": {"errors", "tada"},
    "engine": {"errors"},
    "concepts": {"errors"},
    "sae": {"errors", "runs"},
    "report": {"errors"},
    "evaluation": {"audio", "errors"},
    "toy.world": {"audio", "errors", "evaluation"},
    "registry": {"audio", "errors", "evaluation", "toy.world"},
    "models": {"audio", "engine", "errors", "toy.world"},
    "localization": {"audio", "concepts", "engine", "errors", "evaluation", "models", "progress", "registry", "report",
                     "runs"},
    "methods": {"audio", "concepts", "engine", "errors", "localization", "models", "progress", "runs", "sae", "tada"},
    "experiments": {"audio", "concepts", "engine", "errors", "evaluation", "localization", "methods", "models",
                    "progress", "registry", "report", "runs", "sae", "tada"},
    "toy.training": {"audio", "errors", "evaluation", "models", "progress", "runs", "toy.world"},
    "studio": {"audio", "concepts", "errors", "evaluation", "experiments", "localization", "methods", "models",
               "progress", "registry", "report", "runs"},
    "cli": {"audio", "concepts", "engine", "errors", "evaluation", "experiments", "localization", "methods", "models",
            "progress", "registry", "report", "runs", "sae", "studio", "tada", "toy.world", "toy.training"},
    "__main__": {"cli"},
    "tada": set(),
}
#: the toy folder holds the embedded world (data, model, scorer: used by models and evaluation) and its training
TOY_TRAINING = {"tada.toy.train"}


def layer(module: str) -> str:
    if module in TOY_TRAINING or any(module.startswith(m + ".") for m in TOY_TRAINING):
        return "toy.training"
    if module == "tada.evaluation.registry":
        return "registry"
    parts = module.split(".")
    if len(parts) == 1:
        return "tada"
    return "toy.world" if parts[1] == "toy" else parts[1]


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("tada", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        out[name] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """The tada modules a file imports (``from a.b import c`` is a.b.c when that is a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tada"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tada":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_layer_imports_only_what_the_architecture_allows():
    bad = []
    for module, targets in graph().items():
        for target in targets:
            src, dst = layer(module), layer(target)
            if src != dst and dst not in ALLOWED[src]:
                bad.append(f"{module} ({src}) imports {target} ({dst})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle_among_modules():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt in g and nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_a_forbidden_arrow(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from tada.cli import app\n")
    assert imports(path, {"tada.cli"}) == {"tada.cli"}
    assert "cli" not in ALLOWED[layer("tada.engine.hooks")]


def test_the_table_in_docs_matches():
    doc = (ROOT.parents[1] / "docs" / "architecture.md").read_text()
    for name, allowed in ALLOWED.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/architecture.md has no row for {name}"
        listed = {x.strip(" `") for x in row.split("|")[2].split(",") if x.strip(" `-")}
        assert listed == allowed, f"{name}: docs list {sorted(listed)}, the test allows {sorted(allowed)}"
