"""SAM2 pretraining for the toy world: the SAM2 architecture (the package's smallest config, at a
small input size) trained from scratch to turn a box and two points into the object's mask, the
analogue of SAM2's SA-1B training. Prompts are what a policy answers: a box anywhere between the
object's tight box and its cell (jittered) and two points inside the object. The loss: pixel BCE
(object pixels weighted up) + dice on each of the three multimask outputs, plus the IoU head (so
the prediction stage's best-score choice picks a good mask).
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rise.data.toy_world import SIZE, answer_points, scenes
from rise.toy.clip import object_box
from rise.warmup import optimiser_step

log = logging.getLogger(__name__)


def inside_points(obj, rng: random.Random) -> np.ndarray:
    """Two positive clicks: the answer's own points half of the time, else two random mask pixels."""
    if rng.random() < 0.5:
        return np.array(answer_points(obj), dtype=np.float32)
    ys, xs = np.nonzero(obj.mask)
    picks = [rng.randrange(len(xs)) for _ in range(2)]
    return np.array([[xs[i] + 0.5, ys[i] + 0.5] for i in picks], dtype=np.float32)


class SamTrainer:
    """The forward pass of SAM2ImagePredictor (set_image_batch + _predict), with gradients."""

    def __init__(self, model):
        from sam2.utils.transforms import SAM2Transforms

        self.model = model
        size = model.image_size
        self.transforms = SAM2Transforms(resolution=size, mask_threshold=0.0)
        self.feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]

    def __call__(self, images: list[np.ndarray], boxes: np.ndarray, points: np.ndarray, image_index: list[int]):
        """One mask prompt per row of boxes/points, on the image image_index[row] (each image encoded once)."""
        m = self.model
        batch = torch.stack([self.transforms(im) for im in images])
        backbone = m.forward_image(batch)
        _, vision_feats, _, _ = m._prepare_backbone_features(backbone)
        if m.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + m.no_mem_embed
        feats = [f.permute(1, 2, 0).view(len(images), -1, *s)
                 for f, s in zip(vision_feats[::-1], self.feat_sizes[::-1])][::-1]
        index = torch.as_tensor(image_index)
        feats = [f[index] for f in feats]
        hw = (SIZE, SIZE)
        box = self.transforms.transform_boxes(torch.as_tensor(boxes), normalize=True, orig_hw=hw).reshape(-1, 2, 2)
        pts = self.transforms.transform_coords(torch.as_tensor(points), normalize=True, orig_hw=hw)
        coords = torch.cat([box, pts], 1)
        labels = torch.tensor([[2, 3, 1, 1]], dtype=torch.int).repeat(len(index), 1)
        sparse, dense = m.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, iou_pred, _, _ = m.sam_mask_decoder(
            image_embeddings=feats[-1], image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
            repeat_image=False, high_res_features=feats[:-1])
        return F.interpolate(low_res, hw, mode="bilinear", align_corners=False), iou_pred


def mask_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits, iou_pred: [B, 3, H, W], [B, 3]; target: [B, H, W] bool."""
    t = target[:, None].float().expand_as(logits)
    # objects cover 2-10% of an image: weighting the object's pixels up keeps an all-background
    # mask from being the easy minimum a from-scratch decoder settles in
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none", pos_weight=torch.tensor(10.0)).mean((2, 3))
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * t).sum((2, 3)) + 1) / (prob.sum((2, 3)) + t.sum((2, 3)) + 1)
    per_mask = bce + dice
    with torch.no_grad():
        hard = logits > 0
        iou = (hard & (t > 0)).sum((2, 3)) / ((hard | (t > 0)).sum((2, 3)).clamp(min=1))
    # A box and two points name one object here: every output is trained on it. (SAM's
    # best-of-three loss let a from-scratch decoder keep three prompt-independent blobs.)
    return per_mask.mean() + F.mse_loss(iou_pred, iou.float())


def pretrain_sam2(out_file: str | Path, *, config: str, image_size: int, steps: int, seed: int = 0,
                  batch_size: int = 4, learning_rate: float = 1e-3) -> dict:
    """Trains SAM2 from scratch (batch_size images per step, every object of each prompted) and saves {"model": state_dict} (loadable by rise.models.load_sam2)."""
    from sam2.build_sam import build_sam2

    from rise.models import sam2_overrides

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=sam2_overrides(image_size))
    model.train()
    trainer = SamTrainer(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    stream = scenes(seed, "sam2_pretrain")
    start = time.perf_counter()
    for step in range(steps):
        images, boxes, points, targets, index = [], [], [], [], []
        for k in range(batch_size):
            objects, image = next(stream)
            images.append(np.array(image))
            for o in objects:
                boxes.append(object_box(o, rng))
                points.append(inside_points(o, rng))
                targets.append(torch.from_numpy(o.mask))
                index.append(k)
        logits, iou_pred = trainer(images, np.array(boxes, dtype=np.float32), np.stack(points), index)
        loss = mask_loss(logits, iou_pred, torch.stack(targets))
        optimiser_step(loss, optimizer, model.parameters(), max_grad_norm=1.0, schedule=schedule)
        if step % 25 == 0 or step == steps - 1:
            log.info("sam2 step %d: loss %.3f (%.1f s)", step, loss.item(), time.perf_counter() - start)
    seconds = time.perf_counter() - start
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, out)
    return {"steps": steps, "seconds": round(seconds, 1), "final_loss": round(loss.item(), 4)}


def sam2_report(checkpoint: str | Path, *, config: str, image_size: int, seed: int = 0, n_images: int = 100) -> dict:
    """Mask IoU on held-out images through the prediction stage's own executor (rise.predict.Segmenter,
    best-score multimask): from the object's cell box + the answer's points (what a right answer
    gives), and from the tight ground-truth box alone."""
    from rise.models import load_sam2
    from rise.predict import Segmenter

    segmenter = Segmenter(load_sam2(config, str(checkpoint), image_size))
    stream = scenes(seed, "sam2_heldout")
    ious = {"cell_box_points": [], "tight_box": []}

    def iou(a, b):
        return (a & b).sum() / max((a | b).sum(), 1)

    for _ in range(n_images):
        objects, image = next(stream)
        segmenter.set_image(np.array(image))
        for o in objects:
            mask, _ = segmenter.segment(o.cell_box, answer_points(o))
            ious["cell_box_points"].append(iou(mask, o.mask))
            mask, _ = segmenter.segment(o.tight_box)
            ious["tight_box"].append(iou(mask, o.mask))
    return {"heldout_objects": len(ious["tight_box"]),
            **{f"mask_iou_{k}": round(float(np.mean(v)), 4) for k, v in ious.items()}}
