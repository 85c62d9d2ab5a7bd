"""The toy preset and its stage entries: datasets, pretraining settings and `rise pretrain`
(rise/toy/pipeline.py)."""
import random

import pytest

from conftest import tiny_toy_project
from rise.data import toy_world as world
from rise.data.toy_world import instructions, make_scene, scenes


def test_toy_preset_loads_and_prepares_its_datasets(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.contracts import load_eval_manifest
    from rise.data import prepare_dataset
    from rise.toy.pipeline import pretrain_settings

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    assert set(pretrain_settings(settings)) >= {"clip", "sam2", "policy"}
    settings.datasets["reasonseg_test"]["n_images"] = 3
    rows = load_eval_manifest(prepare_dataset(settings, "reasonseg_test"))
    assert rows and all(r["image"].startswith(str(tmp_path)) for r in rows)


def test_the_toy_preset_trains_on_the_class_names_alone_with_scenes_enough_for_its_train_set():
    """RISE trains on the family its base half-knows (docs/toy-log.md "Fifteenth round"); a scene gives a
    class-name instruction only where an object is unique, so n_images must cover the train set's n
    (too few fails at sample-train, after the pretraining)."""
    import itertools

    from rise.config import PROJECT_ROOT, load_settings

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy")
    train_set = settings.train_sets["refcocog_2k"]
    spec = settings.datasets[train_set["dataset"]]
    assert spec["families"] == ["classname"]
    drawn = itertools.islice(scenes(settings.seed, spec["split"]), spec["n_images"])
    assert sum(bool(instructions(objects, "classname")) for objects, _ in drawn) >= train_set["n"]


def test_the_shade_family_needs_its_words_taught_and_says_which_setting(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.contracts import load_eval_manifest
    from rise.data import prepare_dataset
    from rise.errors import ConfigError
    from rise.toy.pipeline import pretrain

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    settings.datasets["reasonseg_test"].update(n_images=3, families=["colour", "shade"])
    with pytest.raises(ConfigError, match=r"presets.toy.datasets.reasonseg_test.families has 'shade'.*shade_words"):
        prepare_dataset(settings, "reasonseg_test")
    settings.pretrain["policy"]["shade_fact_share"] = 0.01
    with pytest.raises(ConfigError, match=r"pretrain.policy.shade_fact_share is 0.01 but pretrain.shade_words is off"):
        pretrain(settings, "policy")
    settings.pretrain["shade_words"] = True
    shade = [r for r in load_eval_manifest(prepare_dataset(settings, "reasonseg_test")) if r["kind"] == "shade"]
    assert shade and all(r["instruction"].split()[1] in {w for ws in world.SHADES.values() for w in ws} for r in shade)


def test_without_shade_words_the_tokenizer_and_clip_texts_are_those_of_a_world_without_them(tmp_path):
    from rise.toy.clip import descriptions
    from rise.toy.policy import toy_corpus

    shade = {w for ws in world.SHADES.values() for w in ws}
    assert not any(w in text.split() for text in toy_corpus() for w in shade)
    assert any(f" {w} " in text for text in toy_corpus(shade_words=True) for w in shade)
    obj = make_scene(random.Random(0), 1)[0]
    assert [t for t, _ in descriptions(obj, shade_words=True)][:len(descriptions(obj))] == [t for t, _ in descriptions(obj)]
    assert {t.split()[1] for t, _ in descriptions(obj, shade_words=True)} - {t.split()[1] for t, _ in descriptions(obj)} \
        == set(world.SHADES[obj.colour])


def test_pretrain_settings_missing_names_the_setting(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.errors import ConfigError
    from rise.toy.pipeline import pretrain_settings

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="demo", root=tmp_path)
    with pytest.raises(ConfigError, match="presets.demo.pretrain"):
        pretrain_settings(settings)



@pytest.mark.parametrize("stage, model", [("clip", "clip.pt"), ("sam2", "sam2.pt"), ("policy", "policy")])
def test_pretrain_entry_writes_the_model_and_its_report(tmp_path, stage, model):
    import json
    import subprocess
    import sys

    root, models = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "pretrain", "--model", stage], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((models / f"{model}.report.json").read_text())
    assert report["stage"] == stage and report["heldout"] and (models / model).exists()


def test_prepare_data_entry_names_an_unknown_dataset(tmp_path):
    import subprocess
    import sys

    root, _ = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rise.cli", "--preset", "toy", "prepare-data", "--dataset", "nosuch"], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "nosuch" in proc.stderr and "presets.toy.datasets" in proc.stderr
