"""The toy CLIP's pretraining (rise/toy/clip.py)."""
import random

import numpy as np
import torch

from rise.data.toy_world import make_scene


def test_contrastive_loss_prefers_matching_pairs():
    from rise.toy.clip import contrastive_loss

    feats = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    positives = torch.eye(6)
    scale = torch.tensor(np.log(10.0))
    aligned = contrastive_loss(feats, feats, scale, positives)
    shuffled = contrastive_loss(feats, feats.roll(1, 0), scale, positives)
    assert aligned < shuffled


def test_crop_descriptions_and_claims_agree():
    from rise.toy.clip import describes, sample_crops, text_for

    rng = random.Random(0)
    for _ in range(200):
        objects = make_scene(rng, 3)
        _, crop = sample_crops(objects, rng)
        _, claim = text_for(crop, rng)
        assert describes(claim, crop)


def test_clip_pretraining_writes_a_model_the_reward_loads(tmp_path):
    from rise.models import TINY_CLIP_NAME, load_clip
    from rise.toy.clip import clip_report, pretrain_clip

    out = tmp_path / "clip.pt"
    trained = pretrain_clip(out, steps=2, batch_size=8)
    assert trained["steps"] == 2 and out.exists()
    load_clip(TINY_CLIP_NAME, str(out))
    report = clip_report(out, n_scenes=2)
    assert 0 <= report["zero_shot_accuracy_classname"] <= 1 and report["heldout_crops"] >= 4


# --------------------------------------------------------------------------------------------- SAM2
