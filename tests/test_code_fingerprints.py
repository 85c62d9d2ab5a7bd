"""Code-aware reruns (rise/fingerprints.py): each stage depends on the normalised code of the `rise`
modules its command imports, found from the import graph. Edits are made to a copy of the library;
the engines' own planning on a built demo is in test_workflow.py (Snakemake) and
test_dvc_pipeline.py (DVC)."""
import shutil
from pathlib import Path

import pytest
import yaml

from rise.dvc_pipeline import cli_commands, pipeline
from rise.fingerprints import STAGE_COMMANDS, code_fingerprint, write_code_fingerprints
from rise.plan import stage_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def library(tmp_path) -> Path:
    dest = tmp_path / "rise"
    shutil.copytree(ROOT / "rise", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def fingerprints(library: Path) -> dict[str, str]:
    return {c: code_fingerprint([c], library)["fingerprint"] for c in STAGE_COMMANDS}


def changed_after(library: Path, module: str, old: str, new: str) -> set[str]:
    """The commands whose fingerprint changes when `old` becomes `new` in rise/<module> (`old`
    None: `new` is appended)."""
    before = fingerprints(library)
    path = library / module
    text = path.read_text()
    assert old is None or old in text, f"{old!r} not in {module}"
    path.write_text(text + new if old is None else text.replace(old, new, 1))
    after = fingerprints(library)
    return {c for c in before if before[c] != after[c]}


NEW_FUNCTION = "\n\ndef added_helper():\n    return 1\n"
# A behaviour change in each module, and the commands that must rerun for it. `pretrain` (the toy
# world) imports the predictor and the rewards to pretrain and report its models.
BEHAVIOUR_EDITS = [
    ("metrics.py", "100.0", "50.0", {"evaluate", "draws", "judges"}),  # the bootstrap reads sample_iou
    ("answer.py", None, NEW_FUNCTION, {"train", "predict", "pretrain"}),
    ("rewards.py", None, NEW_FUNCTION, {"train", "pretrain"}),
    ("predict.py", None, NEW_FUNCTION, {"predict", "pretrain"}),
    ("tables.py", None, NEW_FUNCTION, {"table"}),
]


@pytest.mark.parametrize("module,old,new,expected", BEHAVIOUR_EDITS, ids=[e[0] for e in BEHAVIOUR_EDITS])
def test_a_behaviour_change_reruns_exactly_the_commands_that_import_the_module(library, module, old, new, expected):
    assert changed_after(library, module, old, new) == expected


def test_metrics_scale_is_where_the_edit_is_made(library):
    # the edit above is the one the issue measured: gIoU's scale
    assert "100.0" in (library / "metrics.py").read_text()


@pytest.mark.parametrize("edit", [
    ("train.py", "def ", "# a new comment\ndef "),
    ("train.py", '"""', '"""A reworded docstring. ', ),
    ("metrics.py", "\n\n", "\n\n\n"),
])
def test_comments_docstrings_and_layout_rerun_nothing(library, edit):
    module, old, new = edit
    assert changed_after(library, module, old, new) == set()


def test_a_module_no_stage_imports_reruns_nothing(library):
    # rise/memory.py serves `rise check` alone
    assert changed_after(library, "memory.py", None, NEW_FUNCTION) == set()


def test_a_new_import_is_followed_without_any_list(library):
    (library / "scaling.py").write_text("SCALE = 100.0\n")
    text = (library / "metrics.py").read_text()
    (library / "metrics.py").write_text("from rise.scaling import SCALE\n" + text)
    assert "rise.scaling" in code_fingerprint(["evaluate"], library)["modules"]
    assert changed_after(library, "scaling.py", "100.0", "50.0") == {"evaluate", "draws", "judges"}


def test_a_new_cli_command_changes_no_other_command(library):
    cli = library / "cli.py"
    text = cli.read_text()
    function_line = "def check_data_command(settings, args)"
    entry_line = '    "check-data": Command('
    assert function_line in text and entry_line in text
    before = fingerprints(library)
    text = text.replace(function_line, 'def hello_arguments(p):\n    p.add_argument("--name")\n\n\n'
                        'def hello_command(settings, args):\n    print("hello")\n\n\n' + function_line)
    text = text.replace(entry_line, '    "hello": Command(hello_command, "say hello", hello_arguments),\n' + entry_line)
    cli.write_text(text)
    assert fingerprints(library) == before
    assert "rise.cli:hello" in code_fingerprint(["hello"], library)["modules"]
    # a stage's own function does count, and only for it
    assert changed_after(library, "cli.py", "_each_eval_set(settings, args, evaluate)",
                         "_each_eval_set(settings,  args, evaluate)") == set()
    assert changed_after(library, "cli.py", "    _each_eval_set(settings,  args, evaluate)\n",  # (the edit above)
                         "    _each_eval_set(settings, args, evaluate)\n    log.info('evaluated')\n") == {"evaluate"}


def test_fingerprint_files_are_rewritten_only_when_they_change(library, tmp_path):
    out = tmp_path / "code"
    [file] = write_code_fingerprints(out, ["evaluate"], library)
    stamp = file.stat().st_mtime_ns
    write_code_fingerprints(out, ["evaluate"], library)
    assert file.stat().st_mtime_ns == stamp
    assert yaml.safe_load(file.read_text())["fingerprint"] == code_fingerprint(["evaluate"], library)["fingerprint"]


def test_every_dvc_stage_depends_on_the_code_of_the_commands_it_runs():
    for preset in ("demo", "toy", "paper"):
        stages = pipeline(ROOT / "params.yaml", preset)["stages"]
        code = f"runs/{preset}/code"
        assert stages["code_fingerprints"]["deps"] == ["rise"]
        lines = [line for name, s in stages.items() if name != "code_fingerprints"
                 for line in ([s.get("do", s)["cmd"]] if isinstance(s.get("do", s)["cmd"], str) else s.get("do", s)["cmd"])]
        assert set(stages["code_fingerprints"]["outs"]) == \
            {f"{code}/{c}.json" for line in lines for c in cli_commands(line)}
        deps = {name: [d for d in s.get("do", s).get("deps", []) if d.startswith(code)] for name, s in stages.items()}
        assert deps["train"] == [f"{code}/launch.json", f"{code}/train.json"]
        assert deps["predict"] == [f"{code}/launch.json", f"{code}/predict.json"]
        assert deps["evaluate"] == [f"{code}/evaluate.json"]
        assert deps["table4"] == [f"{code}/table.json", f"{code}/show.json"]
        assert deps["prepare_data"] == [f"{code}/prepare-data.json"]
    assert cli_commands("rise --preset toy --log x.log pretrain --model clip") == ["pretrain"]
    assert cli_commands("mkdir -p runs/demo/data/images/x") == []


def test_every_snakemake_rule_that_calls_rise_has_the_code_of_its_commands():
    """Each rule's `code=code(...)` names the commands its shell line calls."""
    import re

    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |for stage)", smk.read_text()):
            shell = re.search(r'shell: (".*?")\s*$', block, re.S)
            if not shell or "{RISE}" not in shell.group(1):
                continue
            called = re.findall(r"\{RISE\} --log \{log\} ([\w-]+)(?: \{wildcards\.\w+\}| (train|predict))?",
                                shell.group(1).replace('"\n           "', ""))
            commands = [c for pair in called for c in pair if c]
            declared = re.search(r"code=code\(([^)]*)\)", block)
            assert declared, f"{smk.name}: a rule calling rise has no code param:\n{block[:200]}"
            assert [c.strip(' "') for c in declared.group(1).split(",")] == commands, smk.name


def test_portable_cpu_kernels_pin_torch_before_it_starts():
    """`cpu_kernels: portable` (the toy preset's): torch runs its AVX2 kernels on one thread."""
    import subprocess
    import sys

    code = ("from rise.kernels import pin_cpu_kernels; pin_cpu_kernels('portable'); import torch; "
            "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["AVX2", "1"]
    from rise.config import load_settings

    toy = load_settings(ROOT / "params.yaml", "toy")
    assert toy.cpu_kernels == "portable" and '"cpu_kernels": "portable"' in stage_settings(toy, "evaluate")
    assert '"cpu_kernels"' not in stage_settings(load_settings(ROOT / "params.yaml", "demo"), "evaluate")
    assert "presets.toy.cpu_kernels" in pipeline(ROOT / "params.yaml", "toy")["stages"]["train"]["do"]["params"]
