"""The embedded demo data: seeded images of simple shapes with exact masks and graded instructions.

Instruction kinds (each unambiguous by construction):
  attribute    "the red circle"                       (a colour+shape pair that occurs once)
  spatial      "the shape left of the blue square"    (the nearest object whose centre is left of the anchor)
  comparative  "the largest green shape"              (largest/smallest among >= 2 of one colour)
  classname    "circle"                               (one object per image; stands in for ImageNet)
It writes the evaluation-manifest schema of rise/contracts.py, like every real loader.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rise.contracts import encode_mask

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
KINDS = ("attribute", "spatial", "comparative", "classname")


@dataclass
class Shape:
    shape: str
    colour: str
    cx: float
    cy: float
    r: float
    mask: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def shape_mask(shape: str, cx: float, cy: float, r: float, size: tuple[int, int]) -> np.ndarray:
    """The mask of a circle, square or triangle of radius r centred at (cx, cy), in an image of `size`."""
    im = Image.new("L", size, 0)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=1)
    return np.array(im, dtype=bool)


def _place(rng: random.Random, n: int, w: int, h: int, rmin: float, rmax: float, shapes, colours) -> list[Shape]:
    placed: list[Shape] = []
    tries = 0
    while len(placed) < n and tries < 500:
        tries += 1
        r = rng.uniform(rmin, rmax)
        cx, cy = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
        if any((cx - s.cx) ** 2 + (cy - s.cy) ** 2 < (r + s.r + 4) ** 2 for s in placed):
            continue
        kind, colour = rng.choice(shapes), rng.choice(colours)
        placed.append(Shape(kind, colour, cx, cy, r, shape_mask(kind, cx, cy, r, (w, h))))
    return placed


def _render(shapes: list[Shape], w: int, h: int, rng: np.random.Generator) -> Image.Image:
    canvas = np.full((h, w, 3), 235, dtype=np.float32) + rng.normal(0, 6, (h, w, 3))
    for s in shapes:
        canvas[s.mask] = np.array(COLOURS[s.colour], dtype=np.float32) + rng.normal(0, 4, (int(s.mask.sum()), 3))
    return Image.fromarray(canvas.clip(0, 255).astype(np.uint8))


def _instructions(shapes: list[Shape], kinds, rng: random.Random) -> list[tuple[str, str, int]]:
    """(kind, instruction, target index) for every kind that this image can express unambiguously."""
    out = []
    names = [s.name for s in shapes]
    unique = [i for i, n in enumerate(names) if names.count(n) == 1]
    if "attribute" in kinds and unique:
        i = rng.choice(unique)
        out.append(("attribute", f"the {names[i]}", i))
    if "spatial" in kinds and unique:
        rng.shuffle(unique)
        for a in unique:
            left = [j for j, s in enumerate(shapes) if s.cx < shapes[a].cx - 4]
            if left:
                j = max(left, key=lambda k: shapes[k].cx)
                out.append(("spatial", f"the shape left of the {names[a]}", j))
                break
    if "comparative" in kinds:
        by_colour: dict[str, list[int]] = {}
        for i, s in enumerate(shapes):
            by_colour.setdefault(s.colour, []).append(i)
        groups = [(c, idx) for c, idx in by_colour.items() if len(idx) >= 2]
        if groups:
            colour, idx = rng.choice(groups)
            areas = sorted(idx, key=lambda k: shapes[k].mask.sum())
            if shapes[areas[-1]].mask.sum() > 1.2 * shapes[areas[-2]].mask.sum():
                out.append(("comparative", f"the largest {colour} shape", areas[-1]))
            elif shapes[areas[1]].mask.sum() > 1.2 * shapes[areas[0]].mask.sum():
                out.append(("comparative", f"the smallest {colour} shape", areas[0]))
    return out


def generate(dataset: str, split: str, n_images: int, kinds, image_dir: Path, seed: int) -> list[dict]:
    """Writes PNG images under image_dir and returns evaluation-manifest rows."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown synthetic instruction kinds {sorted(unknown)} (known: {KINDS})")
    split_seed = (seed * 1_000_003 + zlib.crc32(split.encode())) & 0xFFFFFFFF
    rng = random.Random(split_seed)
    noise = np.random.default_rng(split_seed)
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n_images):
        w, h = rng.choice([(160, 128), (128, 160), (144, 144), (192, 128)])
        if list(kinds) == ["classname"]:
            shapes = _place(rng, 1, w, h, 28, 46, SHAPES, list(COLOURS))
            items = [("classname", shapes[0].shape, 0)]
        else:
            shapes = _place(rng, rng.randint(3, 5), w, h, 10, 26, SHAPES, list(COLOURS))
            items = _instructions(shapes, kinds, rng)
        image_id = f"{split}_{k:05d}"
        path = image_dir / f"{image_id}.png"
        _render(shapes, w, h, noise).save(path)
        for j, (kind, text, target) in enumerate(items):
            rows.append({
                "sample_id": f"{image_id}_{j}", "image": str(path), "instruction": text,
                "height": h, "width": w, "mask": encode_mask(shapes[target].mask), "ignore": None,
                "dataset": dataset, "split": split, "source_id": f"synthetic:{image_id}:{target}", "kind": kind,
            })
    return rows


# The loader registry's entries (rise/data/__init__.py).
PATHS = ()


def load(spec: dict, request) -> list[dict]:
    return generate(request.dataset, spec["split"], spec["n_images"], spec["kinds"], request.image_dir,
                    request.settings.seed)


def describe(spec: dict, request) -> dict:
    return {"split": spec["split"], "images": spec["n_images"], "image_folder": str(request.image_dir),
            "mask_source": "drawn with the synthetic images (exact)"}
