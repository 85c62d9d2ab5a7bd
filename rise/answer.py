"""The one answer parser, used by the training rewards, prediction and analysis. It never raises.

A valid answer (what R_seg rewards, what prediction hands to SAM2):
  - the JSON object is the first `{...}` inside <answer>...</answer> (or anywhere in the text when
    there is no answer block, as Seg-Zero searches); single-quoted keys, as in the prompt's
    example, are accepted unless `single_quotes=False` (Seg-Zero's rewards use strict `json.loads`);
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


def _load_object(snippet: str, single_quotes: bool = True):
    for candidate in (snippet, snippet.replace("'", '"')) if single_quotes else (snippet,):
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    return None


def parse_answer(text, width: float, height: float, *, points: bool = True, single_quotes: bool = True) -> Answer:
    try:
        return _parse(text, float(width), float(height), points, single_quotes)
    except Exception as exc:  # the parser's contract: any input, no exception
        return Answer(False, error=f"parser failure: {type(exc).__name__}")


def _parse(text, width: float, height: float, points: bool, single_quotes: bool) -> Answer:
    if not isinstance(text, str):
        return Answer(False, error="output is not text")
    block = ANSWER_RE.search(text)
    region = block.group(1) if block else text
    m = JSON_OBJECT_RE.search(region)
    if not m:
        return Answer(False, error="no JSON object in the answer")
    obj = _load_object(m.group(0), single_quotes)
    if not isinstance(obj, dict):
        return Answer(False, error="answer is not a JSON object" if single_quotes
                      else "answer is not a strict JSON object (single quotes are not accepted)")
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


SEGZERO_THINK_RE = re.compile(r"<think>([^<]+)</think>")


def parse_answer_segzero(text, *, points: bool = True, think: bool = True) -> Answer:
    """Seg-Zero's evaluation extraction (`extract_bbox_points_think`, commit 77f9ea5), for the
    `evaluate.answer: segzero` protocol. Unlike `parse_answer` it takes the first `{...}` anywhere
    in the text (inside the answer block or not), reads it with strict `json.loads`, takes the first
    key containing 'bbox' and the first two containing 'points', truncates each coordinate with
    `int()`, and fails a sample without a `<think>` block. It does not check that the box is ordered
    or inside the image: SAM2 gets whatever was written. Where the prompt asks for no points (box
    only) or no think block (no CoT), those parts are not required: the original script would fail
    every such sample. Coordinates stay in the pixels of the image the policy saw."""
    try:
        return _parse_segzero(text, points, think)
    except Exception as exc:  # the script's own try/except: any failure scores I = 0
        return Answer(False, error=f"segzero extraction failed: {type(exc).__name__}: {exc}"[:200])


def _parse_segzero(text, points: bool, think: bool) -> Answer:
    if not isinstance(text, str):
        return Answer(False, error="output is not text")
    m = JSON_OBJECT_RE.search(text)
    if not m:
        return Answer(False, error="no JSON object in the text")
    data = json.loads(m.group(0))
    if not isinstance(data, dict):
        return Answer(False, error="answer is not a JSON object")
    bbox_key = next((k for k in data if "bbox" in k.lower()), None)
    if bbox_key is None or len(data[bbox_key]) != 4:
        return Answer(False, error="no 'bbox' key with 4 values")
    box = tuple(float(int(v)) for v in data[bbox_key])
    pts = None
    point_keys = [k for k in data if "points" in k.lower()][:2]
    if points:
        if len(point_keys) != 2:
            return Answer(False, error="fewer than two 'points' keys")
        pts = tuple((float(int(data[k][0])), float(int(data[k][1]))) for k in point_keys)
    if think and not SEGZERO_THINK_RE.search(text):
        return Answer(False, error="no <think> block (Seg-Zero's evaluation fails such samples)")
    return Answer(True, box=box, points=pts)
