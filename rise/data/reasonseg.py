"""ReasonSeg in LISA's raw release: `<root>/<name>.jpg` beside `<root>/<name>.json`.

Each JSON (labelme style) holds `text` (a list of queries), `is_sentence` and `shapes[{label,
points}]`. The ground truth is rasterised as LISA's `get_mask_from_json` does:
  - shapes labelled "flag" are skipped (deprecated annotations);
  - vertices are truncated to integers and every polygon is drawn filled with its outline;
  - polygons are drawn by area, largest first (np.argsort order, as LISA), so a smaller polygon drawn
    later overwrites a larger one;
  - labels containing "ignore" draw 255, the rest draw 1; then mask = (value == 1) and
    ignore = (value == 255).
LISA draws with OpenCV (cv2.fillPoly + cv2.polylines); this project has no OpenCV, so PIL's
ImageDraw.polygon(fill, outline) draws the same integer polygons. Both include the outline pixels;
along slanted edges the two line algorithms may disagree on single boundary pixels.

Spec fields: `root` (the split folder, e.g. data/reasonseg/val), `text_index` (which query of
`text`; default 0, as LISA's evaluation uses text[0]).

LISA reads images with cv2.imread, which applies the EXIF orientation, and its polygons are in that
upright frame. An image whose EXIF orientation is not "upright" is therefore written upright as PNG
under `image_dir`, and the row points to that copy.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rise.contracts import encode_mask
from rise.errors import ConfigError, DataError, MissingResourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TARGET, IGNORE = 1, 255


def _root(spec: dict, setting: str) -> Path:
    if spec.get("root") in (None, ""):
        raise ConfigError(f"{setting}.root is not set (the folder of one ReasonSeg split)")
    root = Path(spec["root"])
    if not root.is_dir():
        raise MissingResourceError(f"{setting}.root: {root} is not a folder (expected LISA's ReasonSeg split "
                                   "folder of <name>.jpg + <name>.json)")
    return root


def find_samples(root: Path) -> list[tuple[str, Path, Path]]:
    """(stem, image path, json path) of every annotated image, sorted by stem.

    A JSON without its image keeps the .jpg path it should have (reported as missing later); an
    image without its JSON is a layout error.
    """
    annotations = {p.stem: p for p in root.glob("*.json")}
    images: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem not in images:
            images[path.stem] = path
    if not annotations:
        raise DataError(f"{root} holds no .json annotation files (expected LISA's ReasonSeg layout "
                        f"<name>.jpg + <name>.json; found {len(images)} images)")
    orphans = sorted(set(images) - set(annotations))
    if orphans:
        raise DataError(f"{root}: {len(orphans)} images have no annotation, e.g. {images[orphans[0]]} "
                        f"(expected {orphans[0]}.json beside it)")
    return [(stem, images.get(stem, root / f"{stem}.jpg"), annotations[stem]) for stem in sorted(annotations)]


def read_annotation(path: Path) -> dict:
    """A ReasonSeg JSON (some are not UTF-8; LISA falls back to cp1252, and so does this)."""
    raw = path.read_bytes()
    try:
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            data = json.loads(raw.decode("cp1252"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "shapes" not in data or "text" not in data:
        raise DataError(f"{path} lacks 'text' or 'shapes' (expected LISA's ReasonSeg annotation)")
    for k, shape in enumerate(data["shapes"]):
        if not isinstance(shape, dict) or "label" not in shape or not shape.get("points"):
            raise DataError(f"{path}: shapes[{k}] needs a label and at least one point")
    return data


def _draw(canvas, points: np.ndarray, value: int) -> None:
    from PIL import ImageDraw

    xy = [(int(x), int(y)) for x, y in points]
    if len(xy) == 1:
        xy = xy * 2  # PIL needs two vertices; a one-point polygon is that pixel, as in OpenCV
    ImageDraw.Draw(canvas).polygon(xy, fill=value, outline=value)


def rasterise(shapes: list[dict], height: int, width: int, where: str = "annotation") -> np.ndarray:
    """LISA's label map (uint8: 0 background, 1 target, 255 ignore) for one image."""
    from PIL import Image

    valid = [s for s in shapes if str(s["label"]).lower() != "flag"]
    polygons = []
    for k, shape in enumerate(valid):
        points = np.asarray(shape["points"], dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise DataError(f"{where}: shape '{shape['label']}' has points of shape {points.shape}; expected [[x, y], ...]")
        polygons.append(points.astype(np.int32))  # truncation, as np.array(points, dtype=np.int32) in LISA
    areas = []
    for points in polygons:
        alone = Image.new("L", (width, height), 0)
        _draw(alone, points, 1)
        areas.append(int(np.asarray(alone, dtype=np.uint8).sum()))
    canvas = Image.new("L", (width, height), 0)
    for k in np.argsort(areas)[::-1]:  # LISA's order: largest first, ties as numpy's argsort leaves them
        value = IGNORE if "ignore" in str(valid[k]["label"]).lower() else TARGET
        _draw(canvas, polygons[k], value)
    return np.asarray(canvas, dtype=np.uint8)


def _query(data: dict, text_index: int, path: Path) -> str:
    texts = data["text"]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise DataError(f"{path}: 'text' is {texts!r}; expected a non-empty list of queries")
    if text_index >= len(texts):
        raise DataError(f"{path} has {len(texts)} queries; the spec asks for text_index {text_index}")
    text = texts[text_index]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}: text[{text_index}] is {text!r}; expected a non-empty query")
    return text.strip()


def _upright_copy(path: str, image_dir: Path, stem: str) -> str:
    """A PNG of the image with its EXIF orientation applied (the frame LISA's polygons are in)."""
    from PIL import Image, ImageOps

    image_dir.mkdir(parents=True, exist_ok=True)
    target = image_dir / f"{stem}.png"
    with Image.open(path) as im:
        ImageOps.exif_transpose(im).save(target, format="PNG")
    return str(target)


def load_reasonseg(spec: dict, *, dataset: str, image_dir: Path, setting: str = "reasonseg dataset",
                   skip_unreadable: bool = False, skipped: list[dict] | None = None) -> list[dict]:
    """Evaluation-manifest rows of one ReasonSeg split folder, sorted by file name."""
    from rise.data.images import inspect_images, reject_images

    root = _root(spec, setting)
    text_index = spec.get("text_index", 0)
    if not isinstance(text_index, int) or isinstance(text_index, bool) or text_index < 0:
        raise ConfigError(f"{setting}.text_index is {text_index!r}; expected an index >= 0")
    samples = find_samples(root)
    found_images = inspect_images(str(image) for _, image, _ in samples)
    problems = {path: found for path, found in found_images.items() if isinstance(found, str)}
    reject_images(problems, {str(image): [stem] for stem, image, _ in samples}, setting=setting,
                  skip=skip_unreadable, skipped=skipped if skipped is not None else [],
                  expected=f"the image of each <name>.json in {root}")
    rows = []
    for stem, image, annotation in samples:
        found = found_images[str(image)]
        if isinstance(found, str):
            continue
        width, height, orientation = found
        path = str(image)
        if orientation != 1:
            path = _upright_copy(path, Path(image_dir), stem)
            if orientation in (5, 6, 7, 8):  # a quarter turn swaps the sides
                width, height = height, width
        data = read_annotation(annotation)
        labels = rasterise(data["shapes"], height, width, str(annotation))
        ignore = labels == IGNORE
        rows.append({
            "sample_id": stem, "image": path, "instruction": _query(data, text_index, annotation),
            "height": height, "width": width, "mask": encode_mask(labels == TARGET),
            "ignore": encode_mask(ignore) if ignore.any() else None,
            "dataset": dataset, "split": root.name, "source_id": f"reasonseg:{annotation}:text={text_index}",
            "kind": "sentence" if data.get("is_sentence") else "phrase",
        })
    log.info("%s: %d samples from %s", setting, len(rows), root)
    return rows


def describe_reasonseg(spec: dict, *, setting: str = "reasonseg dataset", skip_unreadable: bool = False) -> dict:
    """Counts for `check-data`; reads every JSON (small) but no image."""
    from rise.data.images import reject_images

    root = _root(spec, setting)
    samples = find_samples(root)
    missing = {str(image): "does not exist" for _, image, _ in samples if not image.is_file()}
    reject_images(missing, {str(image): [stem] for stem, image, _ in samples}, setting=setting,
                  skip=skip_unreadable, skipped=[], expected=f"the image of each <name>.json in {root}")
    sentences = sum(bool(read_annotation(a).get("is_sentence")) for _, _, a in samples)
    return {"split": root.name, "image_folder": str(root), "samples": len(samples), "images": len(samples),
            "images_missing": len(missing), "sentence_queries": sentences,
            "mask_source": "polygons in <name>.json, rasterised as LISA does (ignore labels -> ignore mask)"}


# The loader registry's entries (rise/data/__init__.py).
PATHS = ("root",)


def load(spec: dict, request) -> list[dict]:
    return load_reasonseg(spec, dataset=request.dataset, image_dir=request.image_dir, setting=request.setting,
                          skip_unreadable=request.skip_unreadable, skipped=request.skipped)


def describe(spec: dict, request) -> dict:
    return describe_reasonseg(spec, setting=request.setting, skip_unreadable=request.skip_unreadable)
