"""Fingerprints: what a result depends on beyond its settings, the code a stage runs and the weights
of the models it used. One place for both.

Code. Every stage is a `rise <command>` call (rise/cli.py); it runs that command's entry of
`rise.cli.COMMANDS`, the cli functions the entry names, what `main` runs for every command, and
every `rise` module those import,
transitively (imports inside functions count: they run when the function does; importing
`rise.data.hf` runs `rise/data/__init__.py` too). The modules are found from the import graph, so
a new module or import is picked up without a list being edited. Each module counts by its
*normalised* code: Python's own parser reads it, docstrings are dropped, and `ast.unparse` writes
it back, so comments, docstrings, blank lines, line breaks and quoting do not count; anything that
changes the parsed program does (a renamed variable too). Not counted: third-party packages
(their versions are in every result's provenance, rise/provenance.py), the settings (each stage
depends on its own, rise/config.py:stage_settings) and the Python version.

Snakemake gets a command's fingerprint as the rule's `code` param (workflow/rules/common.smk),
DVC as the file `runs/<preset>/code/<command>.json` that the stage `code_fingerprints` writes
from the `rise/` folder and each stage lists in its `deps` (rise/dvc_pipeline.py): an edit reruns
that cheap stage, and only the stages whose fingerprint file then differs. `rise code` prints
them.

Models. `weights_fingerprint` hashes a model's weight files (a folder's `*.safetensors`, `*.bin`,
`*.pt`, `*.pth`, or one such file); predictions, metrics and table rows carry the fingerprints of
the policy, SAM2 and the CLIP that trained the policy, so two tables from different weights are
visibly different experiments.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent  # the `rise` package this process imported
# The commands Snakemake's rules and DVC's stages call (`rise code` prints these by default).
STAGE_COMMANDS = ("pretrain", "build-models", "prepare-data", "sample-train", "launch", "train", "predict",
                  "evaluate", "table", "show", "sweep", "sweep-figure", "figure", "draws", "judges")
SHORT = 12  # hex digits shown for a fingerprint
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


# ------------------------------------------------------------------------------------------ code

def library_modules(source: str | Path = LIBRARY) -> dict[str, Path]:
    """Every module of the `rise` package in `source` (a folder named rise), by dotted name."""
    source = Path(source)
    modules = {}
    for path in sorted(source.rglob("*.py")):
        parts = ("rise", *path.relative_to(source).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The `rise` modules that the import statements anywhere under `node` load, with their
    parent packages (Python runs a package's __init__ before any of its modules)."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            found.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                anchor = package.split(".")[:len(package.split(".")) - (n.level - 1)]
                base = ".".join([*anchor, *([n.module] if n.module else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in n.names)  # `from rise import metrics`
    found = {m for m in found if m in modules}
    return found | {p for m in found for p in _parents(m) if p in modules}


@functools.lru_cache(maxsize=None)
def _parsed(path: Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _tree(path: Path) -> ast.Module:
    return _parsed(path, path.stat().st_mtime_ns)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def normalised_code(node: ast.AST) -> str:
    """The code as Python parses it, without comments, docstrings or layout."""
    import copy

    return ast.unparse(_strip_docstrings(copy.deepcopy(node)))


@functools.lru_cache(maxsize=None)
def _module_code(path: Path, size: int, mtime_ns: int) -> str:
    return normalised_code(_tree(path))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT]


def _referenced(roots: list[ast.AST], functions: dict[str, ast.FunctionDef], known: set[str]) -> list[str]:
    """The module's functions that `roots` name (called or passed), and those they name, transitively,
    leaving out `known`."""
    found, todo = [], list(roots)
    while todo:
        for n in ast.walk(todo.pop()):
            if isinstance(n, ast.Name) and n.id in functions and n.id not in found and n.id not in known:
                found.append(n.id)
                todo.append(functions[n.id])
    return found


def cli_parts(source: str | Path = LIBRARY) -> tuple[dict[str, list[ast.AST]], list[ast.AST], ast.Module]:
    """rise/cli.py split into what each command alone runs (its entry of `COMMANDS` and the functions
    that entry names, transitively) and what every command runs (the module's other statements,
    `main` and what it names)."""
    tree = _tree(Path(source) / "cli.py")
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    table = next(n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                 and any(isinstance(t, ast.Name) and t.id == "COMMANDS"
                         for t in (n.targets if isinstance(n, ast.Assign) else [n.target])))
    entries = {k.value: v for k, v in zip(table.value.keys, table.value.values)}
    rest = [n for n in tree.body if not isinstance(n, ast.FunctionDef) and n is not table]
    common_names = _referenced([*rest, functions["main"]], functions, set()) + ["main"]
    common = [*rest, *(functions[name] for name in sorted(set(common_names)))]
    own = {command: [entry, *(functions[name] for name in sorted(_referenced([entry], functions, set(common_names))))]
           for command, entry in entries.items()}
    return own, common, tree


def command_modules(command: str, source: str | Path = LIBRARY) -> dict[str, str]:
    """The code `rise <command>` runs, as {part: normalised code}: `rise.cli:main` (what runs for
    every command), `rise.cli:<command>` (its entry of `COMMANDS` and the functions it names) and
    every `rise` module imported from them, transitively."""
    source = Path(source)
    modules = library_modules(source)
    own, common, tree = cli_parts(source)
    if command not in own:
        from rise.errors import ConfigError

        raise ConfigError(f"rise/cli.py has no command '{command}' (commands: {sorted(own)})")
    parts = {"rise.cli:main": "\n".join(normalised_code(n) for n in common),
             f"rise.cli:{command}": "\n".join(normalised_code(n) for n in own[command])}
    seen: set[str] = set()
    todo_modules = set()
    for node in (*common, *own[command]):
        todo_modules |= _imported(node, "rise.cli", False, modules)
    while todo_modules:
        name = todo_modules.pop()
        if name in seen:
            continue
        seen.add(name)
        path = modules[name]
        todo_modules |= _imported(_tree(path), name, path.name == "__init__.py", modules) - seen
    for name in sorted(seen - {"rise.cli"}):
        stat = modules[name].stat()
        parts[name] = _module_code(modules[name], stat.st_size, stat.st_mtime_ns)
    return parts


def code_fingerprint(commands: list[str] | tuple[str, ...], source: str | Path = LIBRARY) -> dict:
    """{"commands", "fingerprint", "modules": {part: its own fingerprint}} of what the `rise`
    commands run (one rule or stage may call several: `launch train`, `table` then `show`)."""
    parts: dict[str, str] = {}
    for command in commands:
        parts.update(command_modules(command, source))
    modules = {name: _digest(code) for name, code in sorted(parts.items())}
    return {"commands": list(commands), "fingerprint": _digest(json.dumps(modules, sort_keys=True)),
            "modules": modules}


def project_library(project_dir: str | Path) -> Path:
    """The `rise` folder of a project checkout, or, outside one, the package this process imported."""
    candidate = Path(project_dir) / "rise"
    return candidate if (candidate / "cli.py").is_file() else LIBRARY


def write_code_fingerprints(out_dir: str | Path, commands: list[str], source: str | Path = LIBRARY) -> list[Path]:
    """runs/<preset>/code/<command>.json for each command (DVC's stages list them as deps)."""
    from rise.contracts import write_json

    written = []
    for command in commands:
        out = Path(out_dir) / f"{command}.json"
        record = code_fingerprint([command], source)
        if not out.exists() or json.loads(out.read_text()) != record:  # unchanged: leave the file alone
            write_json(out, record)
        written.append(out)
    return written


# ---------------------------------------------------------------------------------------- models

def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


@functools.lru_cache(maxsize=None)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(ref: str | Path | None) -> str | None:
    """A hash of a model's weight files (a folder or one file; a Hub id found in the local cache);
    None where no local weights can be found (a name such as open_clip's 'openai' tag)."""
    if not ref:
        return None
    path = Path(ref)
    if not path.exists():
        path = _hub_snapshot(str(ref))
        if path is None:
            return None
    files = _weight_files(path)
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        stat = f.stat()
        name = f.name if path.is_file() else str(f.relative_to(path))
        h.update(f"{name}\0{_file_digest(f, stat.st_size, stat.st_mtime_ns)}\n".encode())
    return h.hexdigest()[:SHORT]


def _hub_snapshot(ref: str) -> Path | None:
    if ref.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, local_files_only=True))
    except Exception:  # not in the local cache (or not a Hub id): no fingerprint, said as such
        return None


def model_fingerprints(settings) -> dict:
    """The weights of the preset's models as `build-models` found them (models.json)."""
    models = settings.models
    return {"policies": {key: weights_fingerprint(ref) for key, ref in models["policies"].items()},
            "clip": weights_fingerprint(models["clip"]["pretrained"]),
            "sam2": weights_fingerprint(models["sam2"]["checkpoint"])}


def describe_models(fingerprints: dict[str, list[str | None]]) -> str:
    """One table cell: 'policy a1b2c3d4e5f6, 0f9e8d7c6b5a; sam2 ...' ('unknown' where not hashed)."""
    return "; ".join(f"{role} {', '.join(dict.fromkeys(fp or 'unknown' for fp in fps))}"
                     for role, fps in fingerprints.items() if fps)
