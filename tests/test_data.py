import numpy as np
import pytest
from PIL import Image

from rise.contracts import decode_mask, load_eval_manifest, load_train_manifest, ContractError, check_train_rows
from rise.data.synthetic import COLOURS, generate
from rise.errors import DataError
from rise.sampling import sample_pairs


def test_synthetic_is_deterministic(tmp_path):
    a = generate("d", "test", 5, ["attribute", "spatial", "comparative"], tmp_path / "a", seed=3)
    b = generate("d", "test", 5, ["attribute", "spatial", "comparative"], tmp_path / "b", seed=3)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "image"} for r in rows]
    assert strip(a) == strip(b)
    assert (tmp_path / "a" / "test_00000.png").read_bytes() == (tmp_path / "b" / "test_00000.png").read_bytes()
    c = generate("d", "test", 5, ["attribute"], tmp_path / "c", seed=4)
    assert strip(c) != strip(a)


def test_masks_cover_the_named_object(tmp_path):
    rows = generate("d", "val", 8, ["attribute", "spatial", "comparative"], tmp_path, seed=0)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"attribute", "spatial", "comparative"}
    for r in rows:
        mask = decode_mask(r["mask"])
        assert mask.shape == (r["height"], r["width"]) and mask.sum() > 20
        pixels = np.asarray(Image.open(r["image"]).convert("RGB"))[mask].astype(float)
        if r["kind"] == "attribute":
            colour = r["instruction"].split()[1]
            assert np.abs(pixels.mean(0) - COLOURS[colour]).max() < 20, r
        if r["kind"] == "comparative":
            colour = r["instruction"].split()[2]
            assert np.abs(pixels.mean(0) - COLOURS[colour]).max() < 20, r


def test_classification_flavour(tmp_path):
    rows = generate("cls", "classification", 6, ["classname"], tmp_path, seed=0)
    assert len(rows) == 6 and {r["instruction"] for r in rows} <= {"circle", "square", "triangle"}


def test_sampling_is_deterministic_and_geometry_free(tmp_path):
    pool = generate("d", "train", 10, ["attribute", "spatial"], tmp_path, seed=0)
    a = sample_pairs(pool, 6, seed=0, name="ts")
    b = sample_pairs(list(reversed(pool)), 6, seed=0, name="ts")
    assert a == b and len(a) == 6
    assert all("mask" not in r and "ignore" not in r for r in a)
    assert sample_pairs(pool, 6, seed=1, name="ts") != a
    with pytest.raises(DataError, match="asks for 999"):
        sample_pairs(pool, 999, seed=0, name="ts")
    with pytest.raises(ContractError, match="carries geometry"):
        check_train_rows([{**a[0], "bbox": [1, 2, 3, 4]}], "x.jsonl")


def test_manifests_of_the_demo_project(in_demo):
    rows = load_eval_manifest(in_demo.layout.dataset_manifest("reasonseg_test"))
    assert rows and all(r["dataset"] == "reasonseg_test" for r in rows)
    train = load_train_manifest(in_demo.layout.train_manifest("refcocog_2k"))
    assert len(train) == in_demo.train_sets["refcocog_2k"]["n"]
