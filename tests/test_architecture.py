"""The house stays walkable: `rise`'s modules sit on layers and import only their own layer or the
ones below, no import cycle joins two modules, and the catalogue of files in rise/contracts.py names
the paths rise/layout.py lays out."""
import ast
import re
from pathlib import Path

import pytest

from rise.layout import Layout

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "rise"

# Bottom to top. A module may import its own layer and those below it. `rise.toy.*` and
# `rise.data.*` stand for every module of the package.
LAYERS = [
    ("foundation: file contracts, answers, prompts, metrics, paths",
     {"rise.errors", "rise.kernels", "rise.answer", "rise.prompts", "rise.metrics", "rise.memory", "rise.imaging",
      "rise.devices", "rise.checkpoints", "rise.contracts", "rise.layout", "rise.fingerprints"}),
    ("settings and the plan", {"rise.config", "rise.plan", "rise.provenance", "rise.resources", "rise.families"}),
    ("data and models", {"rise.data", "rise.data.*", "rise.models", "rise.rewards", "rise.sampling", "rise.warmup"}),
    ("stages", {"rise.build", "rise.train", "rise.predict", "rise.evaluate", "rise.sweep", "rise.tables",
                "rise.figures", "rise.report", "rise.launch", "rise.cost", "rise.toy", "rise.toy.*"}),
    ("front ends: the CLI, its checks, the DVC pipeline writer", {"rise.cli", "rise.checks", "rise.dvc_pipeline"}),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = ("rise", *path.relative_to(LIBRARY).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """The `rise` modules a module imports anywhere in it (inside functions too: they run when it does)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
    return {m for m in found if m in MODULES and m != name and m != "rise"}


def layer_of(name: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if name in members or any(m.endswith(".*") and name.startswith(m[:-1]) for m in members):
            return index
    raise AssertionError(f"{name} is on no layer: add it to LAYERS in tests/test_architecture.py")


def test_every_module_is_on_a_layer():
    for name in MODULES:
        if name != "rise":
            layer_of(name)


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
              for name in MODULES if name != "rise" for dep in sorted(imports(name)) if layer_of(dep) > layer_of(name)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {name: imports(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    cycles = []

    def visit(name, path):
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The layer check is not vacuous: a data module importing a stage is reported."""
    fake = tmp_path / "rise" / "data"
    fake.mkdir(parents=True)
    (fake / "leak.py").write_text("def f():\n    from rise.train import train_variant\n")
    monkeypatch.setitem(MODULES, "rise.data.leak", fake / "leak.py")
    assert "rise.train" in imports("rise.data.leak") and layer_of("rise.train") > layer_of("rise.data.leak")
    with pytest.raises(AssertionError, match="rise.data.leak .* imports rise.train"):
        test_no_module_imports_a_layer_above_its_own()


# ------------------------------------------------------------------------------ contracts vs layout

def catalogue() -> dict[str, str]:
    """rise/contracts.py's catalogue: {file kind: its path pattern}."""
    import rise.contracts

    entries = re.findall(r"^(\w[\w ]+?)\s{2,}((?:runs|results)/\S+)", rise.contracts.__doc__, re.M)
    return {kind.strip(): path for kind, path in entries}


def test_the_contracts_catalogue_names_the_layouts_paths():
    layout = Layout("<preset>")
    run = ("<variant>", "<dataset>", "<k>", "<checkpoint>")
    expected = {
        "Evaluation manifest": layout.dataset_manifest("<dataset>"),
        "Training manifest": layout.train_manifest("<train_set>"),
        "Policy reference": layout.policy_ref("<variant>", "<k>"),
        "Training curves": layout.train_curves("<variant>", "<k>"),
        "Predictions": layout.predictions(*run),
        "Metrics": layout.metrics(*run),
        "Table": layout.table("<table>"),
        "Table metrics": layout.table("<table>").with_suffix(".json"),
        "Checkpoint sweep": layout.sweep("<variant>"),
        "Qualitative figure": layout.figure("qualitative"),
        "Draws table": layout.draws_table("<table>"),
        "Judges table": layout.judges_table("<table>"),
    }
    assert catalogue() == {kind: str(path) for kind, path in expected.items()}
    import rise.contracts

    text = " ".join(rise.contracts.__doc__.split())
    for beside in (layout.metrics_provenance(*run), ):
        assert str(beside) in text
    for name in (layout.prediction_environment(*run).name, layout.sample_scores(*run).name,
                 layout.family_metrics(*run).name):
        assert name in text
