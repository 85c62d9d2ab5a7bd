"""The paper's rewards (eq. 4-6) as small plug-ins with TRL's reward-function signature.

Each reward takes the completions of a generation batch plus the dataset columns TRL forwards
(`image`: the square image the policy saw, `instruction`, `sample_id`) and returns one float per
completion. A malformed completion scores 0. `build_rewards` returns the enabled terms; TRL sums
them with unit weights, which is eq. 6, and logs each term separately.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rise.answer import has_think_format, parse_answer


def completion_text(completion) -> str:
    """TRL passes conversational completions as [{'role': 'assistant', 'content': ...}]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return ""


class ThinkFormatReward:
    """R_think: 1 if the text is <think>...</think><answer>...</answer>, else 0."""

    __name__ = "think_format"

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float]:
        return [1.0 if has_think_format(completion_text(c)) else 0.0 for c in completions]


class SegFormatReward:
    """R_seg: 1 if the answer holds a valid box (and two points, unless disabled), else 0."""

    __name__ = "seg_format"

    def __init__(self, points: bool = True, single_quotes: bool = True):
        self.points, self.single_quotes = points, single_quotes

    def __call__(self, prompts=None, completions=None, image=None, **kwargs) -> list[float]:
        out = []
        for c, im in zip(completions, image):
            w, h = im.size
            ans = parse_answer(completion_text(c), w, h, points=self.points, single_quotes=self.single_quotes)
            out.append(1.0 if ans.ok else 0.0)
        return out


SEMANTIC_SCALES = ("cosine", "unit")


def crop_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds covering the box, at least one pixel, inside the image."""
    x1, y1, x2, y2 = box
    x1, y1 = max(0, min(width - 1, math.floor(x1))), max(0, min(height - 1, math.floor(y1)))
    x2, y2 = max(x1 + 1, min(width, math.ceil(x2))), max(y1 + 1, min(height, math.ceil(y2)))
    return x1, y1, x2, y2


class SemanticReward:
    """R_sem (eq. 5): CLIP cosine similarity between the crop of the predicted box and the instruction.

    Only the box is read: a completion with a valid box scores even if its points are malformed
    (those are R_seg's business); an invalid or missing box scores 0.

    `scale`: "cosine" is eq. 5 as written, in [-1, 1]. "unit" maps it to (1 + cosine) / 2 in [0, 1],
    so that any valid box outscores an invalid one: with the paper's CLIP that holds already (its
    image-text cosines stay positive), with a CLIP whose cosines go negative (the toy world's) a
    broken answer would otherwise beat a wrong box and training would learn to break the format.

    Batched: every distinct crop of the batch goes through the image tower in one pass, each
    image is converted to a tensor once, identical boxes of one image are scored once, and each
    distinct instruction is encoded once (cached). Crops are resized as tensors the way open_clip's
    own preprocessing does (shortest side to the model's size, bicubic with antialias, centre crop).
    Instructions longer than CLIP's context are truncated by open_clip's tokenizer (the first
    tokens are kept).
    """

    __name__ = "semantic"

    def __init__(self, model, tokenizer, *, device: str = "cpu", dtype=torch.float32,
                 text_cache_size: int = 4096, single_quotes: bool = True, scale: str = "cosine"):
        import open_clip

        if scale not in SEMANTIC_SCALES:
            raise ValueError(f"train.semantic_scale: '{scale}' is not one of {SEMANTIC_SCALES}")
        self.scale = scale

        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device, self.dtype, self.single_quotes = device, dtype, single_quotes
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        self.size = size if isinstance(size, int) else size[0]
        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device).view(3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=device).view(3, 1, 1)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_cache_size = text_cache_size
        self.last_stats: dict = {}

    # -- text ---------------------------------------------------------------------------------
    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            tokens = self.tokenizer(todo).to(self.device)
            feats = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            for t, f in zip(todo, feats):
                self._text_cache[t] = f
                if len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        for t in texts:
            self._text_cache.move_to_end(t)
        return torch.stack([self._text_cache[t] for t in texts])

    # -- crops --------------------------------------------------------------------------------
    def crop_tensor(self, image_u8: torch.Tensor, box) -> torch.Tensor:
        """image_u8: [3, H, W] uint8 on device. Returns a normalised [3, S, S] float crop."""
        _, h, w = image_u8.shape
        x1, y1, x2, y2 = crop_box(box, w, h)
        crop = image_u8[:, y1:y2, x1:x2].float().unsqueeze(0) / 255.0
        ch, cw = crop.shape[-2:]
        scale = self.size / min(ch, cw)
        nh, nw = max(self.size, round(ch * scale)), max(self.size, round(cw * scale))
        crop = F.interpolate(crop, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        crop = crop[0, :, top:top + self.size, left:left + self.size]
        return (crop - self.mean) / self.std

    @torch.no_grad()
    def score(self, texts: list[str], images: list, instructions: list[str], keys: list | None = None) -> list[float]:
        keys = keys if keys is not None else [id(im) for im in images]
        rewards = [0.0] * len(texts)
        pixels: dict = {}
        jobs: OrderedDict = OrderedDict()  # (image key, box, instruction) -> completion indices
        for i, (text, im, key) in enumerate(zip(texts, images, keys)):
            w, h = im.size
            ans = parse_answer(text, w, h, points=False, single_quotes=self.single_quotes)  # the box alone
            if not ans.ok:
                continue
            if key not in pixels:
                pixels[key] = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).to(self.device)
            job = (key, crop_box(ans.box, w, h), instructions[i])
            jobs.setdefault(job, []).append(i)
        self.last_stats = {"completions": len(texts), "distinct_crops": len(jobs)}
        if not jobs:
            return rewards
        crops = torch.stack([self.crop_tensor(pixels[key], box) for key, box, _ in jobs]).to(self.dtype)
        img = F.normalize(self.model.encode_image(crops).float(), dim=-1)
        txt = self.text_features([instr for _, _, instr in jobs])
        sims = (img * txt).sum(-1)
        sims = ((1 + sims) / 2 if self.scale == "unit" else sims).tolist()
        for sim, idxs in zip(sims, jobs.values()):
            for i in idxs:
                rewards[i] = float(sim)
        return rewards

    def __call__(self, prompts=None, completions=None, image=None, instruction=None, sample_id=None, **kwargs):
        return self.score([completion_text(c) for c in completions], image, instruction, keys=sample_id)


def build_rewards(names, *, points: bool, cot: bool, clip_loader: Callable | None = None,
                  device: str = "cpu", single_quotes: bool = True, semantic_scale: str = "cosine") -> list:
    """The enabled reward terms of a variant. Without CoT the think block is not asked for, so
    R_think is not applied even if listed. On GPU, CLIP runs in half precision beside the policy."""
    out = []
    for name in names:
        if name == "think_format":
            if cot:
                out.append(ThinkFormatReward())
        elif name == "seg_format":
            out.append(SegFormatReward(points=points, single_quotes=single_quotes))
        elif name == "semantic":
            if clip_loader is None:
                raise ValueError("the semantic reward needs a CLIP model")
            model, tokenizer = clip_loader()
            out.append(SemanticReward(model, tokenizer, device=device, single_quotes=single_quotes, scale=semantic_scale,
                                      dtype=torch.float16 if torch.device(device).type == "cuda" else torch.float32))
        else:
            raise ValueError(f"unknown reward '{name}'")
    return out
