"""The policy's view of an image, in one place (used by training, the reward and prediction).

Seg-Zero resizes every image to a square (840x840 in the paper preset; aspect ratio not kept),
so Qwen's processor leaves it as is (840 = 30 x 28). The policy answers in that square's
pixels; `to_original` maps its coordinates back for SAM2 and the metrics. The reward's crop is
taken on the square image the policy saw.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from rise.errors import DataError


def open_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(f"image {path} does not exist") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {path} cannot be read: {exc}") from exc


def policy_view(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.BILINEAR)


def to_original(coords, size: int, width: int, height: int) -> list[float]:
    """Scale flat [x, y, x, y, ...] coordinates from the policy's square to the original image."""
    sx, sy = width / size, height / size
    return [float(c) * (sx if i % 2 == 0 else sy) for i, c in enumerate(coords)]
