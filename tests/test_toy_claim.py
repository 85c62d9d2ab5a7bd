"""The paper's claim at a reduced size, through the real train stage (TRL's GRPO with the real
rewards): on a base that writes the named object's answer or another object's about equally often,
the variant rewarded with R_sem (Full) learns which object is meant and Format-only does not, by
more than 2 seed standard deviations over 3 GRPO seeds, read by `rise claim`'s own check.

Reduced to about two minutes (125-140 s here): a CLIP pretrained for 60 steps, a policy of 64 hidden units taught
two answers for each of four instructions (one per colour), 20 GRPO steps of 4 prompts x 8 answers.
The measure is the policy's exact probability of writing the named object's think block
(`choice_distribution`), not gIoU: no SAM2 is pretrained here (docs/toy.md, "The claim at a reduced
size"). The full-size claim is the toy Table 4 (`snakemake results/toy/table4.csv --config preset=toy`).
"""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import ROOT

pytestmark = pytest.mark.slow

POLICY_DIMS = {"text_hidden": 64, "text_layers": 2, "text_heads": 4, "vision_depth": 1, "vision_width": 32}
GRPO = {"max_steps": 20, "save_steps": 20, "prompts_per_step": 4, "num_generations": 8,
        "per_device_batch_size": 32, "learning_rate": 1.0e-4, "seeds": [0, 1, 2]}
METRIC = "p_target"  # the claim's column: "train_prompts p_target", with its "... std"


@pytest.fixture
def one_thread():
    """GRPO on a policy this small is many small operations: with torch's default threads beside the
    other test worker it took 712 s here, at one thread 140 s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_rsem_teaches_a_half_knowing_base_which_object_is_meant_and_format_rewards_do_not(tmp_path, monkeypatch,
                                                                                      one_thread):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from rise.config import load_settings
    from rise.layout import FINAL
    from rise.contracts import TRAIN_FIELDS, load_eval_manifest, read_json, write_jsonl
    from rise.data import prepare_dataset
    from rise.toy.claim import check_claim, report
    from rise.toy.clip import pretrain_clip
    from rise.toy.policy import build_toy_policy, choice_distribution, teach_two_answers
    from rise.data.toy_world import scene_at
    from rise.train import train_variant

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    settings = load_settings("params.yaml", preset="toy", root=tmp_path, overrides={"presets": {"toy": {
        "datasets": {"refcocog_train": {"loader": "toy", "split": "train", "n_images": 12, "families": ["colour"]}},
        "overrides": {"train": GRPO}}}})
    pretrain_clip(settings.models["clip"]["pretrained"], steps=60, batch_size=64, seed=0)
    prepare_dataset(settings, "refcocog_train")
    # one pair per instruction: this policy memorises by instruction, it is not taught to read the image
    pairs = {}
    for row in load_eval_manifest(settings.layout.dataset_manifest("refcocog_train")):
        pairs.setdefault(row["instruction"], row)
    assert sorted(pairs) == ["the blue shape", "the green shape", "the red shape", "the yellow shape"]
    write_jsonl(settings.layout.train_manifest("refcocog_2k"),
                [{k: r[k] for k in TRAIN_FIELDS} for r in pairs.values()])
    samples = []
    for row in pairs.values():
        _, image_id, target = row["source_id"].split(":")  # toy:<split>_<index>:<target>
        objects, image = scene_at(settings.seed, "train", int(image_id.rsplit("_", 1)[1]))
        assert np.array_equal(np.array(image), np.array(Image.open(row["image"])))  # the scene the row was drawn from
        samples.append((row["instruction"], image, objects, int(target)))

    base = build_toy_policy(settings.models["policies"]["3b"], dims=POLICY_DIMS)
    teach_two_answers(base, samples, steps=600)

    def choices(policy):
        processor = AutoProcessor.from_pretrained(policy)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy).eval()
        dist = choice_distribution(model, processor, samples, think="compact")
        return float(np.mean([d["target"] for d in dist])), float(np.mean([d["objects"] for d in dist]))

    base_target, base_objects = choices(base)
    # the base writes an object's answer whole, and the named one about half of the time
    assert base_objects > 0.9 and 0.35 < base_target < 0.65, (base_target, base_objects)
    rows = [{"label": "Base policy (zero-shot)", "variant": "zeroshot_3b", "seeds": 1,
             f"train_prompts {METRIC}": base_target, f"train_prompts {METRIC} std": None}]
    for label, variant in (("Format-only", "format_only_3b"), ("RISE (Full)", "full_3b")):
        runs = []
        for seed in GRPO["seeds"]:
            ref = read_json(train_variant(settings, variant, seed=seed))
            runs.append(choices(ref["checkpoints"][FINAL])[0])
        rows.append({"label": label, "variant": variant, "seeds": len(runs), f"train_prompts {METRIC}": np.mean(runs),
                     f"train_prompts {METRIC} std": np.std(runs, ddof=1)})
    table = tmp_path / "reduced_claim.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    records = check_claim(table, settings.variants, metric=METRIC)
    print(f"{pd.DataFrame(rows).to_string()}\n{report(records, METRIC)}")  # shown with pytest -s
    assert [(r["row"], r["against"]) for r in records] == [("RISE (Full)", "Base policy (zero-shot)"),
                                                            ("RISE (Full)", "Format-only")]
    assert all(r["met"] for r in records), report(records, METRIC)
