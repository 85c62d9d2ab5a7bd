"""Each stage on the tiny demo project: train, predict (with resume), evaluate, table."""

import pandas as pd
import pytest

from rise.contracts import decode_mask, read_json, read_jsonl, read_metrics
from rise.evaluate import evaluate
from rise.predict import PolicyRunner, predict
from rise.tables import build_table
from rise.train import train_variant

from conftest import run_rise


def test_zero_shot_variant_points_at_the_base_policy(in_demo):
    ref = read_json(train_variant(in_demo, "zeroshot_3b"))
    assert ref["trained"] is False and ref["policy"] == in_demo.models["policies"]["3b"]


TRAINED_3B = ["full_3b", "format_only_3b", "semantic_only_3b", "no_seg_format_3b", "no_think_format_3b",
              "no_cot_3b", "no_points_3b", "clsonly_3b", "clsonly_no_cot_3b"]


@pytest.mark.parametrize("variant", TRAINED_3B)
def test_grpo_training_runs_and_saves_a_loadable_policy(in_demo, variant):
    ref = read_json(train_variant(in_demo, variant))
    assert ref["trained"] and ref["steps"] == in_demo.train.max_steps
    from rise.models import load_policy

    model, processor = load_policy(ref["policy"])
    assert model.config.model_type == "qwen2_5_vl"
    curves = pd.read_csv(in_demo.layout.train_curves(variant)).to_dict("records")
    assert len(curves) == in_demo.train.max_steps
    logged = {k.split("/")[1] for k in curves[0] if k.startswith("rewards/")}
    v = in_demo.variants[variant]
    assert logged == {r for r in v.rewards if v.cot or r != "think_format"}  # each enabled term, logged apart
    assert in_demo.layout.train_curves(variant).with_suffix(".png").exists()
    # every save_steps a loadable policy is kept for checkpoint sweeps; TRL's optimiser state is not copied
    assert sorted(ref["checkpoints"]) == sorted(in_demo.checkpoints(variant)) == ["final", "step1"]
    step1 = in_demo.layout.checkpoint_dir(variant) / "step1"
    assert ref["checkpoints"]["step1"] == str(step1) and not list(step1.glob("optimizer*"))
    load_policy(ref["checkpoints"]["step1"])


def test_seeds_are_runs_of_their_own_and_a_sweep_reads_every_checkpoint(in_demo, monkeypatch):
    import json

    from rise.sweep import compare_figure, write_sweep

    monkeypatch.setattr(PolicyRunner, "generate", fake_generate)
    in_demo.train.seeds = [0, 1]
    in_demo.tables = {"table4": in_demo.tables["table4"]}  # full_3b's sweep: reasonseg_test alone
    for seed in (0, 1):
        ref = read_json(train_variant(in_demo, "full_3b", seed=seed))
        assert ref["seed"] == seed and ref["policy"].endswith(f"full_3b/seed{seed}/final")
        fingerprint = json.loads((in_demo.layout.checkpoint_dir("full_3b", seed) / "train_settings.json").read_text())
        assert fingerprint["train_seed"] == seed and "seeds" not in fingerprint["train"]
        for ckpt in ("step1", "final"):
            predict(in_demo, "full_3b", "reasonseg_test", seed=seed, checkpoint=ckpt)
            evaluate(in_demo, "full_3b", "reasonseg_test", seed=seed, checkpoint=ckpt)
    with pytest.raises(Exception, match="kept no checkpoint 'step7'"):
        predict(in_demo, "full_3b", "reasonseg_test", seed=1, checkpoint="step7")
    sweep = pd.read_csv(write_sweep(in_demo, "full_3b"))
    assert sorted(zip(sweep["seed"], sweep["checkpoint"], sweep["step"])) == [
        (0, "final", 2), (0, "step1", 1), (1, "final", 2), (1, "step1", 1)]
    assert in_demo.layout.sweep("full_3b").with_suffix(".png").stat().st_size > 0
    assert compare_figure(in_demo, ["full_3b"], in_demo.layout.figure("sweeps")).stat().st_size > 0
    metrics = read_metrics(in_demo.layout, "full_3b", "reasonseg_test", 1, "step1")
    assert (metrics["seed"], metrics["checkpoint"]) == (1, "step1")
    row = sweep[(sweep["seed"] == 1) & (sweep["checkpoint"] == "step1")].iloc[0]
    assert row["gIoU"] == round(metrics["gIoU"], 2)


def fake_generate(self, rows, images):
    """Stands in for the policy: a valid answer for even samples, junk for odd ones."""
    out = []
    for k, r in enumerate(rows):
        s = self.size
        if k % 2 == 0:
            out.append(f'<think>t</think><answer>{{"bbox": [{s // 8},{s // 8},{s // 2},{s // 2}], '
                       f'"points_1": [{s // 4},{s // 4}], "points_2": [{s // 3},{s // 3}]}}</answer>')
        else:
            out.append("I do not know")
    return out


def test_predict_segments_each_image_once_and_evaluates(in_demo, monkeypatch):
    monkeypatch.setattr(PolicyRunner, "generate", fake_generate)
    train_variant(in_demo, "zeroshot_3b")
    out = predict(in_demo, "zeroshot_3b", "refcocog_test", shard_size=4)
    preds = read_jsonl(out)
    manifest = read_jsonl(in_demo.layout.dataset_manifest("refcocog_test"))
    assert [p["sample_id"] for p in preds] == [m["sample_id"] for m in manifest]
    ok = [p for p in preds if p["parse_ok"]]
    failed = [p for p in preds if not p["parse_ok"]]
    assert ok and failed and all(p["parse_error"] and p["raw_text"] for p in failed)
    for p, m in zip(preds, manifest):
        if p["parse_ok"]:
            mask = decode_mask(p["mask"])
            assert mask.shape == (m["height"], m["width"])
            # coordinates come back in original pixels: 1/8 of the square is 1/8 of the width
            assert p["box"][0] == pytest.approx(m["width"] / 8, rel=0.05)
    numbers = read_json(evaluate(in_demo, "zeroshot_3b", "refcocog_test"))
    assert set(numbers) == {"gIoU", "cIoU", "n_samples", "n_failed_parse"}  # what `dvc metrics show` lists
    metrics = read_metrics(in_demo.layout, "zeroshot_3b", "refcocog_test", 0)  # with its provenance file
    assert metrics["n_samples"] == len(manifest) and metrics["n_failed_parse"] == len(failed)
    assert 0 <= metrics["cIoU"] <= 100 and metrics["protocol"] == "segzero"
    assert metrics["provenance"]["preset"] == "demo"


def test_predict_resumes_after_interruption(in_demo, monkeypatch, tmp_path):
    monkeypatch.setattr(PolicyRunner, "generate", fake_generate)
    train_variant(in_demo, "zeroshot_3b")
    whole = read_jsonl(predict(in_demo, "zeroshot_3b", "reasonseg_val", shard_size=2))
    reference_bytes = in_demo.layout.predictions("zeroshot_3b", "reasonseg_val").read_bytes()
    in_demo.layout.predictions("zeroshot_3b", "reasonseg_val").unlink()

    calls = {"n": 0}

    def dies_on_third_shard(self, rows, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return fake_generate(self, rows, images)

    monkeypatch.setattr(PolicyRunner, "generate", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        predict(in_demo, "zeroshot_3b", "reasonseg_val", shard_size=2)
    shards = sorted((in_demo.layout.predictions("zeroshot_3b", "reasonseg_val").parent / ".reasonseg_val.shards").glob("*.jsonl"))
    assert len(shards) == 2
    already_done = sum(len(read_jsonl(s)) for s in shards)

    seen = []
    monkeypatch.setattr(PolicyRunner, "generate", lambda self, rows, im: seen.extend(rows) or fake_generate(self, rows, im))
    predict(in_demo, "zeroshot_3b", "reasonseg_val", shard_size=2)
    assert in_demo.layout.predictions("zeroshot_3b", "reasonseg_val").read_bytes() == reference_bytes
    assert len(seen) == len(whole) - already_done  # finished shards are not recomputed


def test_table_carries_paper_numbers_and_provenance(in_demo, monkeypatch):
    monkeypatch.setattr(PolicyRunner, "generate", fake_generate)
    import pandas as pd

    for variant in ("no_points_3b", "full_3b"):
        train_variant(in_demo, variant)
        predict(in_demo, variant, "reasonseg_test")
        evaluate(in_demo, variant, "reasonseg_test")
    df = pd.read_csv(build_table(in_demo, "table6"))
    assert list(df["label"]) == ["RISE (w/o Points)", "RISE"]
    assert list(df["paper reasonseg_test cIoU"]) == [42.8, 45.1]
    assert (df["preset"] == "demo").all() and df["note"].str.contains("not comparable").all()
    for variant, g in zip(df["variant"], df["reasonseg_test gIoU"]):
        assert g == pytest.approx(read_json(in_demo.layout.metrics(variant, "reasonseg_test"))["gIoU"], abs=0.01)
    # every row names the weights behind it: the trained policy, its base, the reward's CLIP, SAM2
    from rise.fingerprints import weights_fingerprint

    layout, models = in_demo.layout, in_demo.models
    final = read_json(layout.policy_ref("full_3b"))["policy"]
    expected = (f"policy {weights_fingerprint(final)}; base {weights_fingerprint(models['policies']['3b'])}; "
                f"clip {weights_fingerprint(models['clip']['pretrained'])}; sam2 {weights_fingerprint(models['sam2']['checkpoint'])}")
    assert df["models"].iloc[1] == expected and "unknown" not in expected
    assert read_metrics(layout, "full_3b", "reasonseg_test", 0)["models"]["policy"] == weights_fingerprint(final)
    assert weights_fingerprint(final) != weights_fingerprint(models["policies"]["3b"])  # training moved the weights


def test_a_weights_fingerprint_follows_the_weights_alone(tmp_path):
    from rise.fingerprints import weights_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    first = weights_fingerprint(model)
    (model / "config.json").write_text('{"note": 1}')  # not weights
    assert weights_fingerprint(model) == first and len(first) == 12
    (model / "model.safetensors").write_bytes(b"weightz")
    assert weights_fingerprint(model) != first
    assert weights_fingerprint(model / "model.safetensors") != weights_fingerprint(tmp_path / "missing") is None


def test_cli_reports_unknown_variant(demo_project):
    proc = run_rise("train", "--variant", "nope", cwd=demo_project, check=False)
    assert proc.returncode == 2 and "'nope' is not defined under variants" in proc.stderr


def test_qualitative_figure(in_demo, monkeypatch, tmp_path):
    from rise.figures import qualitative_figure

    monkeypatch.setattr(PolicyRunner, "generate", fake_generate)
    for variant in ("format_only_3b", "full_3b"):
        train_variant(in_demo, variant)
        predict(in_demo, variant, "reasonseg_val")
    out = qualitative_figure(in_demo, ["format_only_3b", "full_3b"], "reasonseg_val", 2, tmp_path / "q.png")
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > im.size[1] / 2 and im.size[0] > 500  # three columns, two rows


def test_a_box_on_the_image_edge_keeps_the_panel_at_the_images_extent():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from rise.figures import _overlay

    fig, ax = plt.subplots()
    image, gt = np.zeros((112, 112, 3)), np.zeros((112, 112), bool)
    gt[84:, 56:84] = True
    _overlay(ax, image, gt, (1.0, 0.0, 0.0), outline=gt)
    limits = (ax.get_xlim(), ax.get_ylim())
    ax.add_patch(Rectangle((56, 84), 28, 28, fill=False))  # a cell box on the bottom edge
    ax.plot(70, 115, marker="*")
    assert (ax.get_xlim(), ax.get_ylim()) == limits == ((-0.5, 111.5), (111.5, -0.5))
    plt.close(fig)


def test_disagree_pick_takes_each_variants_widest_wins_in_turn():
    from rise.figures import choose_samples, win_counts

    manifest = [{"sample_id": f"s{k}"} for k in range(6)]
    preds = {v: {m["sample_id"]: {"parse_ok": True} for m in manifest} for v in ("a", "b")}
    ious = {"a": dict(zip([m["sample_id"] for m in manifest], [0.9, 0.5, 0.0, 0.6, 0.5, 0.95])),
            "b": dict(zip([m["sample_id"] for m in manifest], [0.0, 0.5, 0.8, 0.55, 0.7, 0.0]))}
    picked = [m["sample_id"] for m in choose_samples(manifest, preds, 4, 0, ious=ious)]
    # a's widest win (s5, 0.95), b's (s2, 0.8), a's next (s0, 0.9), b's next (s4, 0.2)
    assert picked == ["s5", "s2", "s0", "s4"]
    assert win_counts(ious) == {"a": 2, "b": 2}  # s3's 0.05 is under the 0.1 threshold; s1 a tie
    # more samples than wins: the rest from the seeded pick, no sample twice
    picked = [m["sample_id"] for m in choose_samples(manifest, preds, 6, 0, ious=ious)]
    assert sorted(picked) == sorted(m["sample_id"] for m in manifest)


def test_vllm_backend_without_vllm_names_the_setting(in_demo):
    import dataclasses

    from rise.errors import MissingResourceError

    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    settings = dataclasses.replace(in_demo, predict=dataclasses.replace(in_demo.predict, backend="vllm"))
    train_variant(settings, "zeroshot_3b")
    with pytest.raises(MissingResourceError, match="predict.backend is 'vllm'"):
        predict(settings, "zeroshot_3b", "reasonseg_val")


def test_sam2_gets_both_points_as_positive_clicks_and_nothing_else():
    """Seg-Zero's inference: box plus the two points, each a positive click (label 1)."""
    import numpy as np
    import torch

    from rise.predict import Segmenter

    class Recorder:
        device = torch.device("cpu")

        def predict(self, multimask_output, **kwargs):
            self.kwargs = kwargs
            return np.zeros((3, 4, 4), bool), np.array([0.1, 0.9, 0.2]), None

    sam = Recorder()
    Segmenter(sam).segment([1, 2, 30, 40], [[5, 6], [7, 8]])
    assert sam.kwargs["point_labels"].tolist() == [1, 1]
    assert sam.kwargs["point_coords"].tolist() == [[5, 6], [7, 8]] and sam.kwargs["box"].tolist() == [1, 2, 30, 40]
    Segmenter(sam).segment([1, 2, 30, 40])
    assert set(sam.kwargs) == {"box"}  # a box-only variant sends no click


@pytest.mark.parametrize("variant,accepts_a_box_alone", [("no_points_3b", True), ("full_3b", False)])
def test_each_variant_trains_with_rewards_built_from_its_own_switches(in_demo, monkeypatch, variant,
                                                                      accepts_a_box_alone):
    """The rewards train_variant hands to GRPO follow the variant's `points` and `cot` (Table 6's
    no-points variant is paid for an answer without points; the full variant is not)."""
    import trl
    from PIL import Image

    class Built(Exception):
        pass

    class Capture:  # stands in for the trainer class, whose constructor receives the rewards
        def __init__(self, *args, reward_funcs=None, **kwargs):
            raise Built(reward_funcs)

    import dataclasses

    from rise.config import Variant

    monkeypatch.setattr(trl, "GRPOTrainer", Capture)
    fresh = f"switches_{variant}"  # a run no other test has finished in the shared demo project
    variants = {**in_demo.variants, fresh: Variant(**{**in_demo.variants[variant].__dict__, "name": fresh})}
    with pytest.raises(Built) as built:
        train_variant(dataclasses.replace(in_demo, variants=variants), fresh)
    rewards = {getattr(f, "__name__", type(f).__name__): f for f in built.value.args[0]}
    box_alone = ["<think>the red circle</think><answer>{\"bbox\": [10, 10, 50, 50]}</answer>"]
    assert rewards["seg_format"](completions=box_alone, image=[Image.new("RGB", (112, 112))]) == \
        [1.0 if accepts_a_box_alone else 0.0]
    assert "think_format" in rewards  # both variants think (cot)
