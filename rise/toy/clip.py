"""CLIP pretraining for the toy world: the tiny open_clip model trained contrastively on crops of
toy objects and their descriptions, the analogue of CLIP's web-scale pretraining.

Crops are cut and resized exactly as R_sem cuts them (rise.rewards.SemanticReward.crop_tensor),
from boxes anywhere between the object's tight box and its cell (jittered). Descriptions name the
object in every instruction family of the world (colour+shape, class name, colour, shape, size);
crops of an empty cell are "the background" and crops spanning two objects "several shapes", so
R_sem learns to score a wrong or sloppy box low. The loss is CLIP's symmetric cross-entropy with
every matching (crop, text) pair of the batch as a positive, since descriptions repeat.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rise.data.synthetic import COLOURS, SHAPES
from rise.data.toy_world import CELL, CLASS_NAMES, GRID, SHADES, SIZE, readable_families, scenes
from rise.warmup import optimiser_step

log = logging.getLogger(__name__)

BACKGROUND, SEVERAL = "the background", "several shapes"


def descriptions(obj, shade_words: bool = False) -> list[tuple[str, dict]]:
    """Texts naming one object, each with what it asserts (colour, shape, size); with `shade_words`,
    its colour named by the shade words as well ("the crimson shape"; world.SHADES)."""
    c, s, z = obj.colour, obj.shape, obj.size
    return [(f"the {c} {s}", {"colour": c, "shape": s}), (f"the {obj.name}", {"colour": c, "shape": s}),
            (f"the {c} shape", {"colour": c}), (f"the {s}", {"shape": s}),
            (f"the {z} {c} {s}", {"colour": c, "shape": s, "size": z}),
            *((f"the {w} shape", {"colour": c}) for w in (SHADES[c] if shade_words else ()))]


def _jitter(box, rng: random.Random, amount: float) -> list[float]:
    x1, y1, x2, y2 = (v + rng.uniform(-amount, amount) for v in box)
    x1, y1 = max(0.0, x1), max(0.0, y1)
    return [x1, y1, max(x1 + 4, min(SIZE, x2)), max(y1 + 4, min(SIZE, y2))]


def object_box(obj, rng: random.Random) -> list[float]:
    """A box somewhere between the tight box and the cell, jittered: what a policy might answer."""
    t = rng.random()
    box = [a + t * (b - a) for a, b in zip(obj.tight_box, obj.cell_box)]
    return _jitter(box, rng, 2.0)


def sample_crops(objects, rng: random.Random):
    """(box, attributes) for one crop of a scene: an object (70%), an empty cell (15%), two objects (15%)."""
    u = rng.random()
    if u < 0.15:
        taken = {(o.row, o.col) for o in objects}
        free = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in taken]
        r, c = rng.choice(free)
        return _jitter([c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL], rng, 2.0), {"kind": "background"}
    if u < 0.30 and len(objects) >= 2:
        a, b = rng.sample(objects, 2)
        box = [min(a.cell_box[0], b.cell_box[0]), min(a.cell_box[1], b.cell_box[1]),
               max(a.cell_box[2], b.cell_box[2]), max(a.cell_box[3], b.cell_box[3])]
        return _jitter(box, rng, 2.0), {"kind": "several"}
    o = rng.choice(objects)
    return object_box(o, rng), {"kind": "object", "colour": o.colour, "shape": o.shape, "size": o.size, "obj": o}


def describes(claim: dict, crop: dict) -> bool:
    if claim["kind"] != crop["kind"]:
        return False
    return all(crop.get(k) == v for k, v in claim.items() if k != "kind")


def text_for(crop: dict, rng: random.Random, shade_words: bool = False) -> tuple[str, dict]:
    if crop["kind"] == "background":
        return BACKGROUND, {"kind": "background"}
    if crop["kind"] == "several":
        return SEVERAL, {"kind": "several"}
    text, claim = rng.choice(descriptions(crop["obj"], shade_words))
    return text, {"kind": "object", **claim}


class CropCutter:
    """R_sem's own crop preprocessing, bound to a model's input size and normalisation."""

    def __init__(self, model):
        from rise.rewards import SemanticReward

        self.reward = SemanticReward(model, tokenizer=None)

    def __call__(self, image, box) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        return self.reward.crop_tensor(pixels, box)


def make_batch(stream, cutter: CropCutter, rng: random.Random, batch_size: int, crops_per_scene: int = 4,
               shade_words: bool = False):
    crops, texts, claims, attrs = [], [], [], []
    while len(crops) < batch_size:
        objects, image = next(stream)
        for _ in range(crops_per_scene):
            box, crop = sample_crops(objects, rng)
            text, claim = text_for(crop, rng, shade_words)
            crops.append(cutter(image, box))
            texts.append(text)
            claims.append(claim)
            attrs.append(crop)
    crops, texts, claims, attrs = crops[:batch_size], texts[:batch_size], claims[:batch_size], attrs[:batch_size]
    positives = torch.tensor([[describes(c, a) for c in claims] for a in attrs], dtype=torch.float32)
    return torch.stack(crops), texts, positives


def contrastive_loss(image_features, text_features, logit_scale, positives) -> torch.Tensor:
    """Symmetric cross-entropy with multi-positive targets (rows: crops, columns: texts)."""
    logits = logit_scale.exp().clamp(max=100) * image_features @ text_features.T
    to_text = -(positives / positives.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    to_image = -(positives / positives.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (to_text + to_image) / 2


def pretrain_clip(out_file: str | Path, *, steps: int, seed: int = 0, batch_size: int = 128,
                  learning_rate: float = 1e-3, shade_words: bool = False) -> dict:
    """Trains the tiny CLIP from scratch and saves its state dict (loadable by rise.models.load_clip);
    with `shade_words` its descriptions name colours by the shade words too (the `shade` family)."""
    import open_clip

    from rise.models import TINY_CLIP_NAME, register_tiny_clip

    register_tiny_clip()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)
    cutter = CropCutter(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.05)
    if round(0.1 * steps, 9) == 1:  # the warm-up would end at step 0: torch's OneCycleLR divides by zero
        raise ValueError("pretrain.clip.steps: 10 steps leave the one-cycle schedule no warm-up; choose another count")
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    stream = scenes(seed, "clip_pretrain")
    start = time.perf_counter()
    for step in range(steps):
        crops, texts, positives = make_batch(stream, cutter, rng, batch_size, shade_words=shade_words)
        img = F.normalize(model.encode_image(crops), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        loss = contrastive_loss(img, txt, model.logit_scale, positives)
        optimiser_step(loss, optimizer, schedule=schedule)
        if step % 50 == 0 or step == steps - 1:
            log.info("clip step %d: loss %.3f", step, loss.item())
    seconds = time.perf_counter() - start
    model.eval()
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return {"steps": steps, "seconds": round(seconds, 1), "final_loss": round(loss.item(), 4),
            "shade_words": shade_words}


@torch.no_grad()
def clip_report(clip_file: str | Path, *, seed: int = 0, n_scenes: int = 200,
                families=readable_families(False)) -> dict:
    """Zero-shot accuracy on held-out crops (each object's cell, as the policy's answer crops it):
    crop -> the 12 class names, and crop -> the 12 colour+shape texts; and how often R_sem ranks
    the named object's cell first among all 16 cells of its image, per instruction family."""
    from rise.models import TINY_CLIP_NAME, load_clip
    from rise.rewards import SemanticReward
    from rise.data.toy_world import instructions

    model, _, tokenizer = load_clip(TINY_CLIP_NAME, str(clip_file))
    reward = SemanticReward(model, tokenizer)
    pairs = [(c, s) for s in SHAPES for c in COLOURS]
    name_feats = reward.text_features([f"the {CLASS_NAMES[p]}" for p in pairs])
    pair_feats = reward.text_features([f"the {c} {s}" for c, s in pairs])
    stream = scenes(seed, "clip_heldout")
    hits = {"classname": 0, "colour+shape": 0}
    n_crops = 0
    ranked = {f: [0, 0] for f in families}
    cells = [[c * CELL, r * CELL, (c + 1) * CELL, (r + 1) * CELL] for r in range(GRID) for c in range(GRID)]
    for _ in range(n_scenes):
        objects, image = next(stream)
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        cell_feats = F.normalize(model.encode_image(torch.stack([reward.crop_tensor(pixels, b) for b in cells])), dim=-1)
        for o in objects:
            f = cell_feats[o.row * GRID + o.col]
            truth = pairs.index((o.colour, o.shape))
            hits["classname"] += int((name_feats @ f).argmax() == truth)
            hits["colour+shape"] += int((pair_feats @ f).argmax() == truth)
            n_crops += 1
        for family in ranked:
            for text, target in instructions(objects, family):
                sims = cell_feats @ reward.text_features([text])[0]
                ranked[family][0] += int(sims.argmax() == objects[target].row * GRID + objects[target].col)
                ranked[family][1] += 1
    return {"heldout_crops": n_crops,
            "zero_shot_accuracy_classname": round(hits["classname"] / n_crops, 4),
            "zero_shot_accuracy_colour_shape": round(hits["colour+shape"] / n_crops, 4),
            **{f"rsem_top1_cell_{f}": round(h / max(n, 1), 4) for f, (h, n) in ranked.items()}}
