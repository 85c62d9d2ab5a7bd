import dataclasses

import pytest
import yaml

from rise.config import PredictSettings, TrainSettings, load_settings
from rise.errors import ConfigError
from rise.plan import Need, table_needs

from conftest import ROOT


def write(tmp_path, mutate):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_project_params_load_for_both_presets():
    demo = load_settings(ROOT / "params.yaml", "demo")
    paper = load_settings(ROOT / "params.yaml", "paper")
    assert demo.train.num_generations == 4 and paper.train.num_generations == 8
    assert paper.train.learning_rate == 1e-6
    assert paper.image["policy_size"] == 840
    assert demo.variants["format_only_3b"].rewards == ("think_format", "seg_format")
    assert demo.variants["full_3b"].rewards == ("semantic", "think_format", "seg_format")
    assert "reasonseg_test" in demo.eval_sets
    assert Need("full_3b", 0, "final", "reasonseg_test") in table_needs(demo, "table4")


def test_malformed_yaml_names_the_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("preset: [demo\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_settings(p)


def test_wrong_type_names_the_setting(tmp_path):
    p = write(tmp_path, lambda r: r["train"].update(learning_rate="fast"))
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_settings(p)


def test_unknown_key_is_refused(tmp_path):
    p = write(tmp_path, lambda r: r["train"].update(lerning_rate=1e-5))
    with pytest.raises(ConfigError, match="lerning_rate"):
        load_settings(p)


def test_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="preset 'gpu' is not defined"):
        load_settings(ROOT / "params.yaml", "gpu")


def test_table_row_with_unknown_variant(tmp_path):
    p = write(tmp_path, lambda r: r["tables"]["table4"]["rows"][0].update(variant="nope"))
    with pytest.raises(ConfigError, match=r"tables\.table4\.rows\[0\]\.variant 'nope'"):
        load_settings(p)


def test_variant_with_unknown_train_set(tmp_path):
    p = write(tmp_path, lambda r: r["variants"]["full_3b"].update(train_set="coco_9k"))
    with pytest.raises(ConfigError, match=r"variants\.full_3b\.train_set 'coco_9k'"):
        load_settings(p)


def test_unknown_reward_name(tmp_path):
    p = write(tmp_path, lambda r: r["variants"]["full_3b"].update(rewards=["iou"]))
    with pytest.raises(ConfigError, match=r"variants\.full_3b\.rewards"):
        load_settings(p)


def test_preset_overrides_apply_only_to_their_preset():
    demo = load_settings(ROOT / "params.yaml", "demo")
    paper = load_settings(ROOT / "params.yaml", "paper")
    assert demo.train.max_steps == 2 and paper.train.max_steps == -1
    assert demo.train.learning_rate == paper.train.learning_rate


def test_training_gpus_per_variant(tmp_path):
    p = write(tmp_path, lambda r: r["variants"]["full_7b"].update(gpus=4))
    paper = load_settings(p, "paper")
    assert paper.train_gpus("full_7b") == 4 and paper.train_gpus("full_3b") == 8
    assert paper.train_gpus("zeroshot_3b") == 0
    assert load_settings(p, "demo").train_gpus("full_7b") == 0


SECTIONS = ("evaluate", "image")  # read as mappings; train and predict are typed (TYPED)
TYPED = {"train": TrainSettings, "predict": PredictSettings}


def keys_read_without_default() -> set[tuple[str, str]]:
    """(section, key) of every `<x>.<section>["key"]` in rise/, directly or through a local name
    bound to the section (`e = settings.evaluate; e["key"]`). Reads with .get(key, default) are not counted."""
    import ast

    def section_of(node, aliases):
        if isinstance(node, ast.Attribute) and node.attr in SECTIONS:
            return node.attr
        if isinstance(node, ast.Name):
            return aliases.get(node.id)
        return None

    found = set()
    for file in sorted((ROOT / "rise").rglob("*.py")):
        for func in ast.walk(ast.parse(file.read_text())):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            aliases = {}
            for node in ast.walk(func):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    section = section_of(node.value, {})
                    if section:
                        aliases[node.targets[0].id] = section
            for node in ast.walk(func):
                if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                        and isinstance(node.slice.value, str)):
                    section = section_of(node.value, aliases)
                    if section:
                        found.add((section, node.slice.value))
    # a typed section's field without a default is read as given: the file must hold it
    found |= {(section, f.name) for section, cls in TYPED.items() for f in dataclasses.fields(cls)
              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return found


READ_KEYS = sorted(keys_read_without_default())


def test_the_scan_finds_the_reads_it_must():
    assert {("train", "learning_rate"), ("train", "bf16"), ("predict", "multimask"), ("evaluate", "protocol"),
            ("image", "policy_size")} <= set(READ_KEYS)


@pytest.mark.parametrize("section,key", READ_KEYS, ids=[f"{s}.{k}" for s, k in READ_KEYS])
def test_every_key_the_code_reads_is_required(tmp_path, section, key):
    p = write(tmp_path, lambda r: r[section].pop(key))
    with pytest.raises(ConfigError, match=rf"params.yaml: invalid settings\n  {section}: '{key}' is a required property"):
        load_settings(p)


@pytest.mark.parametrize("section", TYPED)
def test_typed_sections_document_every_setting_the_schema_knows(section):
    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    known = set(schema["$defs"][section]["properties"])
    required = set(schema["properties"][section]["required"])
    fields = {f.name: f for f in dataclasses.fields(TYPED[section])}
    assert set(fields) == known
    assert {n for n, f in fields.items() if f.default is dataclasses.MISSING} == required
    assert all(f.metadata.get("help") for f in fields.values())


def test_check_names_a_removed_train_key(tmp_path):
    from conftest import copy_project, run_rise

    root = copy_project(tmp_path / "p")
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["train"]["max_grad_norm"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run_rise("check", cwd=root, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train: 'max_grad_norm' is a required property" in proc.stderr


def test_a_preset_builds_its_own_tables_with_its_own_rows():
    toy, paper = load_settings(ROOT / "params.yaml", "toy"), load_settings(ROOT / "params.yaml", "paper")
    assert list(toy.tables) == ["table1", "table4", "transfer"] and len(paper.tables) == 8
    rows = toy.tables["table4"]["rows"]
    assert [r["label"] for r in rows][-1] == "RISE (Full)" and not any("reported" in r for r in rows)
    assert paper.tables["table4"]["rows"][-1]["reported"] == [52.9, 45.1]  # the paper's rows untouched
    assert "toy world" in toy.table_note and paper.table_note == ""
    assert toy.seeds("full_3b") == [0, 1, 2] and toy.seeds("zeroshot_3b") == [0]


def test_unknown_preset_table_and_bad_checkpoint_choice_name_the_setting(tmp_path):
    p = write(tmp_path, lambda r: r["presets"]["toy"].update(tables=["table4", "table9"]))
    with pytest.raises(ConfigError, match=r"presets\.toy\.tables names \['table9'\]"):
        load_settings(p, "toy")
    p = write(tmp_path, lambda r: r["tables"]["table4"].update(checkpoint="best on nowhere"))
    with pytest.raises(ConfigError, match=r"tables\.table4\.checkpoint 'best on nowhere'"):
        load_settings(p)
    p = write(tmp_path, lambda r: r["tables"]["table4"].update(checkpoint="the best"))
    with pytest.raises(ConfigError, match=r"tables\.table4\.checkpoint"):
        load_settings(p)


def test_checkpoints_follow_save_steps_and_the_planned_steps():
    paper = load_settings(ROOT / "params.yaml", "paper")
    assert paper.train_steps("full_3b") == 2000 // 16 == 125
    assert paper.checkpoints("full_3b") == ["step50", "step100", "final"]
    assert paper.checkpoints("zeroshot_3b") == ["final"]
    paper.train.max_steps = 100
    assert paper.checkpoints("full_3b") == ["step50", "final"]  # the last save is the final checkpoint


def test_a_preset_adds_variants_of_its_own_and_may_not_redefine_shared_ones(tmp_path):
    toy, paper = load_settings(ROOT / "params.yaml", "toy"), load_settings(ROOT / "params.yaml", "paper")
    assert toy.variants["transfer_full_3b"].train_set == "refcocog_half_names"
    assert "transfer_full_3b" not in paper.variants  # the toy's training set alone has the names split
    p = write(tmp_path, lambda r: r["presets"]["toy"]["variants"].update(full_3b={"train": False}))
    with pytest.raises(ConfigError, match=r"presets\.toy\.variants redefines \['full_3b'\]"):
        load_settings(p, "toy")


def test_family_marks_read_a_split_of_the_class_names():
    """The transfer table's class names are marked 'unseen names' for rows trained on the other names,
    and the training set's names are part of what a row says it was trained on."""
    from rise.families import family_marks, grpo_trained_on

    toy = load_settings(ROOT / "params.yaml", "toy")
    half = ["zeroshot_3b", "transfer_format_3b", "transfer_full_3b"]
    assert family_marks(toy, half, "transfer_test") == {"classname": "unseen names"}
    assert family_marks(toy, half, "reasonseg_test") == {"classname": "trained", "colour": "unseen", "shape": "unseen"}
    # a row trained on every name has seen them
    assert family_marks(toy, half + ["full_3b"], "transfer_test") == {"classname": "trained"}
    trained, other = (set(toy.datasets[d]["names"]) for d in ("refcocog_train_half_names", "transfer_test"))
    assert not trained & other and len(trained | other) == 12
    assert grpo_trained_on(toy, "transfer_full_3b") == ("refcocog_train_half_names: classname (names: "
                                                          + ", ".join(toy.datasets["refcocog_train_half_names"]["names"]) + ")")
    assert grpo_trained_on(toy, "full_3b") == "refcocog_train: classname"
