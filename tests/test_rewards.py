import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rise.models import build_tiny_clip, load_clip
from rise.rewards import SegFormatReward, SemanticReward, ThinkFormatReward, build_rewards, crop_box


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = build_tiny_clip(tmp_path_factory.mktemp("clip") / "clip.pt", seed=1)
    return load_clip("RISE-tiny-CLIP", str(path))


def answer(box, pts=((5, 5), (6, 6))):
    return [{"role": "assistant", "content": f"<think>x</think><answer>{{'bbox': {list(box)}, "
             f"'points_1': {list(pts[0])}, 'points_2': {list(pts[1])}}}</answer>"}]


def image(seed=0, size=112):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def reference_similarity(clip, img, box, text):
    """Independent computation: open_clip's own PIL preprocessing of the cropped image."""
    model, preprocess, tokenizer = clip
    x1, y1, x2, y2 = crop_box(box, *img.size)
    with torch.no_grad():
        f_img = model.encode_image(preprocess(img.crop((x1, y1, x2, y2))).unsqueeze(0))
        f_txt = model.encode_text(tokenizer([text]))
    return F.cosine_similarity(f_img, f_txt).item()


def test_semantic_reward_matches_open_clip(clip):
    model, _, tokenizer = clip
    reward = SemanticReward(model, tokenizer)
    imgs = [image(0), image(0), image(1)]
    boxes = [(10, 10, 60, 90), (0, 0, 112, 112), (30, 5, 50, 100)]
    texts = ["the red circle", "the red circle", "a blue square"]
    got = reward(completions=[answer(b) for b in boxes], image=imgs, instruction=texts)
    want = [reference_similarity(clip, im, b, t) for im, b, t in zip(imgs, boxes, texts)]
    # tensor resizing vs PIL resizing differ by interpolation rounding only
    assert np.allclose(got, want, atol=0.03), (got, want)
    assert len(set(np.round(got, 4))) == 3


def test_invalid_box_scores_zero_and_duplicates_score_once(clip):
    model, _, tokenizer = clip
    reward = SemanticReward(model, tokenizer)
    im = image(2)
    comps = [answer((10, 10, 50, 50))] * 4 + [[{"role": "assistant", "content": "garbage"}],
                                              answer((50, 10, 10, 50))]
    got = reward(completions=comps, image=[im] * 6, instruction=["t"] * 6, sample_id=["s"] * 6)
    assert got[4] == 0.0 and got[5] == 0.0
    assert len(set(got[:4])) == 1 and got[0] != 0.0
    assert reward.last_stats == {"completions": 6, "distinct_crops": 1}


def test_unit_scale_maps_the_cosine_to_zero_one_and_keeps_invalid_at_zero(clip):
    model, _, tokenizer = clip
    cosine, unit = SemanticReward(model, tokenizer), SemanticReward(model, tokenizer, scale="unit")
    imgs = [image(4), image(5), image(6)]
    comps = [answer((10, 10, 60, 90)), answer((0, 0, 112, 112)), [{"role": "assistant", "content": "garbage"}]]
    texts = ["the red circle", "a blue square", "t"]
    raw = cosine(completions=comps, image=imgs, instruction=texts)
    got = unit(completions=comps, image=imgs, instruction=texts)
    assert np.allclose(got[:2], [(1 + r) / 2 for r in raw[:2]]) and got[2] == 0.0
    assert all(0 <= g <= 1 for g in got)
    with pytest.raises(ValueError, match="train.semantic_scale: 'exp'"):
        SemanticReward(model, tokenizer, scale="exp")


def test_semantic_reward_ignores_malformed_points(clip):
    model, _, tokenizer = clip
    reward = SemanticReward(model, tokenizer)
    bad_points = [{"role": "assistant", "content": "<answer>{'bbox': [1,1,50,50], 'points_1': [999,1]}</answer>"}]
    assert reward(completions=[bad_points], image=[image(3)], instruction=["t"])[0] != 0.0
    assert SegFormatReward()(completions=[bad_points], image=[image(3)]) == [0.0]


def test_format_rewards():
    im = image()
    good = answer((1, 1, 20, 20))
    no_think = [{"role": "assistant", "content": "<answer>{'bbox': [1,1,20,20], 'points_1': [2,2], 'points_2': [3,3]}</answer>"}]
    box_only = [{"role": "assistant", "content": "<answer>{'bbox': [1,1,20,20]}</answer>"}]
    assert ThinkFormatReward()(completions=[good, no_think]) == [1.0, 0.0]
    assert SegFormatReward()(completions=[good, no_think, box_only], image=[im] * 3) == [1.0, 1.0, 0.0]
    assert SegFormatReward(points=False)(completions=[box_only], image=[im]) == [1.0]


def test_build_rewards_switches(clip):
    loader = lambda: (clip[0], clip[2])
    names = lambda rs: [r.__name__ for r in rs]
    assert names(build_rewards(["semantic", "think_format", "seg_format"], points=True, cot=True, clip_loader=loader)) == \
        ["semantic", "think_format", "seg_format"]
    assert names(build_rewards(["think_format", "seg_format"], points=True, cot=False)) == ["seg_format"]
    with pytest.raises(ValueError):
        build_rewards(["iou"], points=True, cot=True)
