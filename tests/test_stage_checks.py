"""The predict, evaluate and table stages checked cell by cell on small inputs written here (no models)."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rise.config import load_settings
from rise.contracts import decode_mask, encode_mask, write_jsonl
from rise.contracts import read_metrics
from rise.evaluate import evaluate
from rise.plan import table_needs
from rise.predict import image_shards, predict_shard
from rise.tables import build_table

from conftest import ROOT

SIZE = 112  # the policy's square


class ScriptedPolicy:
    """The policy's interface with a fixed answer per sample."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def generate(self, rows, images):
        return [self.answers[r["sample_id"]] for r in rows]


class RecordingSegmenter:
    """Segmenter's interface: records each image encode and each prompt, returns an empty mask."""

    def __init__(self):
        self.encoded, self.prompts = [], []

    def set_image(self, image: np.ndarray) -> None:
        self.encoded.append(image.shape)

    def segment(self, box, points=None):
        self.prompts.append((box, points))
        height, width = self.encoded[-1][:2]
        return np.zeros((height, width), dtype=bool), 0.5


def answer(box, p1, p2) -> str:
    """A well-formed answer in strict JSON (what both answer protocols read)."""
    return (f'<think>t</think><answer>{{"bbox": {list(box)}, "points_1": {list(p1)}, '
            f'"points_2": {list(p2)}}}</answer>')


def test_predictions_map_back_on_both_axes_and_encode_each_image_once(tmp_path):
    sizes = {"wide.png": (300, 150), "tall.png": (90, 240)}  # width, height: neither is square
    for name, (w, h) in sizes.items():
        Image.new("RGB", (w, h), (40, 80, 120)).save(tmp_path / name)
    rows = []
    for k, name in enumerate(["wide.png", "tall.png", "wide.png", "tall.png", "wide.png"]):  # interleaved
        w, h = sizes[name]
        rows.append({"sample_id": f"s{k}", "image": str(tmp_path / name), "width": w, "height": h})
    box, p1, p2 = (14, 28, 56, 84), (21, 35), (42, 70)
    answers = {r["sample_id"]: answer(box, p1, p2) for r in rows}
    answers["s2"] = "I do not know"  # a failed parse on an image that other samples still use
    segmenter = RecordingSegmenter()
    [shard] = image_shards(rows, shard_size=32)
    records = {rec["sample_id"]: rec for rec in predict_shard(shard, ScriptedPolicy(answers), segmenter, SIZE, True)}

    for r in rows:
        rec = records[r["sample_id"]]
        if r["sample_id"] == "s2":
            assert not rec["parse_ok"] and rec["box"] is None and rec["mask"] is None
            continue
        sx, sy = r["width"] / SIZE, r["height"] / SIZE
        assert rec["box"] == pytest.approx([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy])
        assert [c for p in rec["points"] for c in p] == pytest.approx([p1[0] * sx, p1[1] * sy, p2[0] * sx, p2[1] * sy])
        assert decode_mask(rec["mask"]).shape == (r["height"], r["width"])
    # SAM2 got the same original-pixel prompts, and encoded each distinct image once (not each sample)
    assert sorted(map(str, segmenter.prompts)) == sorted(
        str((records[s]["box"], records[s]["points"])) for s in records if s != "s2")
    assert sorted(segmenter.encoded) == sorted((h, w, 3) for w, h in sizes.values())


def test_predict_stage_encodes_each_distinct_image_once(in_demo, monkeypatch):
    """The whole stage with demo SAM2: image encodes counted against the distinct images."""
    from rise.predict import PolicyRunner, Segmenter, predict
    from rise.train import train_variant

    encodes = []
    real_set_image = Segmenter.set_image

    def counting_set_image(self, image):
        encodes.append(image.shape)
        real_set_image(self, image)

    def always_valid(self, rows, images):
        s = self.size
        return [answer((s // 8, s // 8, s // 2, s // 2), (s // 4, s // 4), (s // 3, s // 3)) for _ in rows]

    monkeypatch.setattr(PolicyRunner, "generate", always_valid)
    monkeypatch.setattr(Segmenter, "set_image", counting_set_image)
    train_variant(in_demo, "zeroshot_3b")
    manifest = [json.loads(line) for line in in_demo.layout.dataset_manifest("reasonseg_test").read_text().splitlines()]
    out = in_demo.layout.predictions("zeroshot_3b", "reasonseg_test")
    out.unlink(missing_ok=True)
    predict(in_demo, "zeroshot_3b", "reasonseg_test", shard_size=4)
    images = {r["image"] for r in manifest}
    assert len(manifest) > len(images)  # several instructions per image, or the count proves nothing
    assert len(encodes) == len(images)


# --------------------------------------------------------------------------------------------- evaluate

def lines(rows=(), cols=()):
    """An 8x8 mask with whole rows or columns set."""
    m = np.zeros((8, 8), dtype=bool)
    for r in rows:
        m[r, :] = True
    for c in cols:
        m[:, c] = True
    return m


def corner(top: bool):
    """A 2x2 square in the top-left or bottom-right corner of an 8x8 mask."""
    m = np.zeros((8, 8), dtype=bool)
    m[(slice(0, 2) if top else slice(6, 8)), (slice(0, 2) if top else slice(6, 8))] = True
    return m


def test_evaluate_stage_applies_the_ignore_region(tmp_path):
    """Three samples with ignore pixels; the expected numbers are worked out by hand below."""
    base = load_settings(ROOT / "params.yaml", "demo", root=tmp_path)
    cases = [  # sample id, ground truth, ignore, prediction (None: the answer did not parse)
        ("a", lines(rows=(2, 3)), lines(rows=(0, 1)), lines(rows=(0, 1, 2, 3))),
        ("b", lines(cols=(0, 1)), lines(cols=(6, 7)), lines(cols=(0, 1, 2, 3))),
        ("c", corner(top=True), corner(top=False), None),
    ]
    write_jsonl(base.layout.dataset_manifest("reasonseg_test"), [
        {"sample_id": sid, "image": f"{sid}.png", "instruction": "x", "height": 8, "width": 8,
         "mask": encode_mask(gt), "ignore": encode_mask(ignore), "dataset": "reasonseg_test", "split": "test",
         "source_id": sid} for sid, gt, ignore, _ in cases])
    write_jsonl(base.layout.predictions("zeroshot_3b", "reasonseg_test"), [
        {"sample_id": sid, "raw_text": "", "parse_ok": pred is not None,
         "parse_error": None if pred is not None else "no JSON object in the answer", "box": None, "points": None,
         "mask": encode_mask(pred) if pred is not None else None, "sam_score": None, "think_chars": 0}
        for sid, _, _, pred in cases])
    expected = {
        # segzero: ignore pixels count as object. a: I 32, U 32; b: I 16, U 48; c (failed): I 0, U 4 + 4
        "segzero": {"a": (32, 32), "b": (16, 48), "c": (0, 8),
                    "gIoU": 100 * (1 + 1 / 3 + 0) / 3, "cIoU": 100 * 48 / 88},
        # lisa: ignore pixels leave both masks. a: I 16, U 16; b: I 16, U 32; c (failed): I 0, U 4
        "lisa": {"a": (16, 16), "b": (16, 32), "c": (0, 4), "gIoU": 100 * (1 + 0.5 + 0) / 3, "cIoU": 100 * 32 / 52},
    }
    for protocol, want in expected.items():
        settings = dataclasses.replace(base, evaluate={**base.evaluate, "protocol": protocol})
        evaluate(settings, "zeroshot_3b", "reasonseg_test")
        metrics = read_metrics(settings.layout, "zeroshot_3b", "reasonseg_test", 0)
        assert metrics["gIoU"] == pytest.approx(want["gIoU"]) and metrics["cIoU"] == pytest.approx(want["cIoU"])
        assert metrics["n_samples"] == 3 and metrics["n_failed_parse"] == 1 and metrics["protocol"] == protocol
        per_sample = pd.read_csv(settings.layout.sample_scores("zeroshot_3b", "reasonseg_test"))
        got = {r.sample_id: (r.intersection, r.union) for r in per_sample.itertuples()}
        assert got == {sid: want[sid] for sid in "abc"}, protocol


# --------------------------------------------------------------------------------------------- tables

def test_every_table_cell_comes_from_its_row_variant_and_column_metric(tmp_path):
    base = load_settings(ROOT / "params.yaml", "demo", root=tmp_path)
    models = {**base.models, "policies": {"3b": "policy-3b", "7b": "policy-7b"}}
    settings = dataclasses.replace(base, models=models)
    metrics, k = {}, 0
    for table in settings.tables:
        for need in table_needs(settings, table):
            variant, dataset = need.variant, need.dataset
            if (variant, dataset) in metrics:
                continue
            k += 1  # every file gets numbers no other file has, and gIoU != cIoU
            metrics[variant, dataset] = {"gIoU": 10 + 1.37 * k, "cIoU": 60 - 0.71 * k, "n_samples": 100 + k,
                                         "n_failed_parse": k, "protocol": "segzero"}
            out = settings.layout.metrics(variant, dataset)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(metrics[variant, dataset]))
    for name, table in settings.tables.items():
        df = pd.read_csv(build_table(settings, name))
        assert len(df) == len(table["rows"])
        for (_, cells), row in zip(df.iterrows(), table["rows"]):
            variant = row["variant"]
            assert cells["label"] == row["label"] and cells["variant"] == variant
            assert cells["policy"] == models["policies"][settings.variants[variant].policy]
            for (dataset, metric), paper in zip(table["columns"], row["reported"]):
                assert cells[f"{dataset} {metric}"] == round(metrics[variant, dataset][metric], 2), (name, variant)
                assert cells[f"paper {dataset} {metric}"] == paper
            for dataset in {d for d, _ in table["columns"]}:
                assert cells[f"{dataset} samples"] == metrics[variant, dataset]["n_samples"]
                assert cells[f"{dataset} failed parses"] == metrics[variant, dataset]["n_failed_parse"]
