"""The one answer parser, used by the training rewards, prediction and analysis. It never raises.

A valid answer (what R_seg rewards, what prediction hands to SAM2):
  - the JSON object is the first `{...}` inside <answer>...</answer> (or anywhere in the text when
    there is no answer block, as Seg-Zero searches); single-quoted keys, as in the prompt's
    example, are accepted;
  - `bbox` (or Qwen2.5-VL's `bbox_2d`) holds 4 finite numbers x1, y1, x2, y2 with 0 <= x1 < x2 <= width and
    0 <= y1 < y2 <= height, in the pixels of the image the policy saw;
  - with points: `points_1` and `points_2` hold 2 finite numbers each, inside the image
    (not required to lie inside the box: the paper never scores the points' position).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

THINK_ANSWER_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
JSON_OBJECT_RE = re.compile(r"\{[^}]+\}")


@dataclass(frozen=True)
class Answer:
    ok: bool
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], tuple[float, float]] | None = None
    error: str | None = None


def has_think_format(text: str) -> bool:
    """R_think's test: the whole text is <think>...</think> then <answer>...</answer>."""
    return isinstance(text, str) and THINK_ANSWER_RE.fullmatch(text.strip()) is not None


def think_chars(text: str) -> int:
    m = THINK_RE.search(text) if isinstance(text, str) else None
    return len(m.group(1).strip()) if m else 0


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _numbers(v, n: int) -> list[float] | None:
    if not isinstance(v, (list, tuple)) or len(v) != n:
        return None
    out = [_number(x) for x in v]
    return None if any(x is None for x in out) else out


def _load_object(snippet: str):
    for candidate in (snippet, snippet.replace("'", '"')):
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    return None


def parse_answer(text, width: float, height: float, *, points: bool = True) -> Answer:
    try:
        return _parse(text, float(width), float(height), points)
    except Exception as exc:  # the parser's contract: any input, no exception
        return Answer(False, error=f"parser failure: {type(exc).__name__}")


def _parse(text, width: float, height: float, points: bool) -> Answer:
    if not isinstance(text, str):
        return Answer(False, error="output is not text")
    block = ANSWER_RE.search(text)
    region = block.group(1) if block else text
    m = JSON_OBJECT_RE.search(region)
    if not m:
        return Answer(False, error="no JSON object in the answer")
    obj = _load_object(m.group(0))
    if not isinstance(obj, dict):
        return Answer(False, error="answer is not a JSON object")
    box = _numbers(obj.get("bbox", obj.get("bbox_2d")), 4)  # bbox_2d: Qwen2.5-VL's own grounding format
    if box is None:
        return Answer(False, error="bbox missing or not 4 finite numbers")
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        return Answer(False, error="bbox not ordered or outside the image")
    if not points:
        return Answer(True, box=(x1, y1, x2, y2))
    pts = []
    for key in ("points_1", "points_2"):
        p = _numbers(obj.get(key), 2)
        if p is None:
            return Answer(False, error=f"{key} missing or not 2 finite numbers")
        if not (0 <= p[0] <= width and 0 <= p[1] <= height):
            return Answer(False, error=f"{key} outside the image")
        pts.append((p[0], p[1]))
    return Answer(True, box=(x1, y1, x2, y2), points=(pts[0], pts[1]))
