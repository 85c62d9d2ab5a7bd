"""RefCOCO / RefCOCO+ / RefCOCOg in the REFER format (github.com/lichengunc/refer).

Layout: `<root>/<dataset>/refs(<split_by>).p` (a pickled list of refs: ref_id, ann_id, image_id,
category_id, split, sentences[{raw, sent, sent_id, tokens}]) and `<root>/<dataset>/instances.json`
(COCO images and annotations, polygon or RLE segmentation), images in the `images` folder (COCO
train2014 for all three datasets).

Two protocols (spec field `level`):
  instance    one row per ref (referred object), using sentence number `sentence` (default 0);
              this is how the evaluation sets of the paper's group were built (RefCOCO testA: 1,975 rows)
  expression  one row per sentence (RefCOCO testA: 5,657 rows)

The instruction is the sentence's `sent` (REFER's cleaned, lower-case text, as LISA uses), or its
`raw` text where `sent` is empty. Masks come from pycocotools' polygon rasterisation and stay RLE:
no mask is decoded, so the 49K refs of RefCOCOg train take seconds.
"""
from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

from rise.errors import ConfigError, DataError, MissingResourceError

log = logging.getLogger(__name__)

LEVELS = ("instance", "expression")
SPEC_DEFAULTS = {"level": "instance", "sentence": 0}


def refer_paths(spec: dict, setting: str = "refer dataset") -> tuple[Path, Path, Path]:
    """(refs pickle, instances.json, image folder) named by a spec; each must exist."""
    for key in ("root", "dataset", "split_by", "images"):
        if spec.get(key) in (None, ""):
            raise ConfigError(f"{setting}.{key} is not set (the refer loader needs root, dataset, split_by, "
                              "split and images)")
    folder = Path(spec["root"]) / spec["dataset"]
    refs_file = folder / f"refs({spec['split_by']}).p"
    instances_file = folder / "instances.json"
    images = Path(spec["images"])
    if not folder.parent.is_dir():
        raise MissingResourceError(f"{setting}.root: {folder.parent} is not a folder (expected REFER's annotations "
                                   "folder holding <dataset>/refs(<split_by>).p + instances.json)")
    if not folder.is_dir():
        raise MissingResourceError(f"{setting}: folder {folder} does not exist (expected the REFER layout "
                                   f"<root>/<dataset>/refs(<split_by>).p + instances.json)")
    if not refs_file.is_file():
        present = sorted(p.name for p in folder.glob("refs(*).p"))
        raise MissingResourceError(f"{setting}: {refs_file} does not exist (expected REFER's pickled refs for "
                                   f"split_by '{spec['split_by']}'; found {present or 'no refs(*).p file'})")
    if not instances_file.is_file():
        raise MissingResourceError(f"{setting}: {instances_file} does not exist (expected REFER's COCO-style "
                                   "instances.json with images and annotations)")
    if not images.is_dir():
        raise MissingResourceError(f"{setting}.images: {images} is not a folder (expected the COCO train2014 "
                                   "images named by instances.json)")
    return refs_file, instances_file, images


def _options(spec: dict, setting: str) -> tuple[str, int, str]:
    level = spec.get("level", SPEC_DEFAULTS["level"])
    if level not in LEVELS:
        raise ConfigError(f"{setting}.level is '{level}'; expected one of {list(LEVELS)}")
    sentence = spec.get("sentence", SPEC_DEFAULTS["sentence"])
    if not isinstance(sentence, int) or isinstance(sentence, bool) or sentence < 0:
        raise ConfigError(f"{setting}.sentence is {sentence!r}; expected a sentence index >= 0")
    split = spec.get("split")
    if split in (None, ""):
        raise ConfigError(f"{setting}.split is not set (REFER splits: train, val, testA, testB for "
                          "refcoco/refcoco+ (unc), train, val, test for refcocog (umd))")
    return level, sentence, str(split)


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a class or function, which plain data never does."""


class PlainDataUnpickler(pickle.Unpickler):
    """Builds lists, dicts, tuples, strings, numbers, booleans and None, and nothing else.

    Those need no class lookup, so refusing every lookup (`find_class`) refuses anything that
    could construct an object or call a function: a tampered refs file cannot run code."""

    def find_class(self, module, name):
        raise RefusedPickle(f"{module}.{name}")


def read_refs(refs_file: Path) -> list[dict]:
    """REFER's pickled refs (written by Python 2; strings that are not ASCII are read as latin-1),
    read with `PlainDataUnpickler`."""
    try:
        with refs_file.open("rb") as fh:
            try:
                refs = PlainDataUnpickler(fh).load()
            except UnicodeDecodeError:
                fh.seek(0)
                refs = PlainDataUnpickler(fh, encoding="latin1").load()
    except RefusedPickle as exc:
        raise DataError(f"{refs_file} was refused: it names the Python object '{exc}', which unpickling would "
                        "import and call; REFER's refs are plain lists, dicts, strings and numbers (replace the "
                        "file with REFER's own)") from exc
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise DataError(f"{refs_file} is not a readable pickle ({exc}); expected REFER's list of refs") from exc
    if not isinstance(refs, list) or (refs and not isinstance(refs[0], dict)):
        raise DataError(f"{refs_file} holds a {type(refs).__name__}; expected REFER's list of ref dicts")
    needed = ("ref_id", "ann_id", "image_id", "split", "sentences")
    for ref in refs:
        missing = [k for k in needed if k not in ref]
        if missing:
            raise DataError(f"{refs_file}: ref {ref.get('ref_id', '?')} lacks {missing}; REFER refs have "
                            f"{list(needed)}")
    return refs


def refs_of_split(refs: list[dict], split: str, refs_file: Path) -> list[dict]:
    chosen = sorted((r for r in refs if r["split"] == split), key=lambda r: r["ref_id"])
    if not chosen:
        present = sorted({str(r["split"]) for r in refs})
        raise DataError(f"{refs_file} has no refs in split '{split}' (splits present: {present or 'none, empty'})")
    return chosen


def read_instances(instances_file: Path, image_ids: set, ann_ids: set) -> tuple[dict, dict]:
    """Images and annotations of instances.json, indexed by id, keeping only the ids asked for."""
    try:
        with instances_file.open() as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{instances_file} is not valid JSON ({exc}); expected COCO-style instances") from exc
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{instances_file} lacks 'images' or 'annotations'; expected COCO-style instances")
    images = {im["id"]: im for im in data["images"] if im["id"] in image_ids}
    anns = {a["id"]: a for a in data["annotations"] if a["id"] in ann_ids}
    return images, anns


def _ann_rle(ann: dict, height: int, width: int, where: str) -> dict:
    """A COCO annotation's segmentation as compressed RLE with an ASCII `counts` string."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if isinstance(seg, list):
        # pycocotools reads a first polygon of 4 numbers as a box; polygons under 3 points have no area
        polygons = [[float(v) for v in p] for p in seg if len(p) >= 6]
        if not polygons:
            raise DataError(f"{where}: annotation {ann['id']} has no polygon with 3 or more points")
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(s) for s in seg["size"]] != [height, width]:
            raise DataError(f"{where}: annotation {ann['id']} has an RLE of size {seg['size']} on an image of "
                            f"{height}x{width}")
        counts = seg["counts"]
        if isinstance(counts, list):  # uncompressed RLE (iscrowd objects)
            if sum(counts) != height * width:
                raise DataError(f"{where}: annotation {ann['id']} has uncompressed RLE counts summing to "
                                f"{sum(counts)}, not {height}x{width}")
            rle = mask_utils.frPyObjects(seg, height, width)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": [height, width], "counts": counts}
        else:
            raise DataError(f"{where}: annotation {ann['id']} has RLE counts of type {type(counts).__name__}")
    else:
        raise DataError(f"{where}: annotation {ann['id']} has no polygon or RLE segmentation")
    counts = rle["counts"]
    return {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _sentence_text(sentence: dict) -> str:
    return (sentence.get("sent") or sentence.get("raw") or "").strip()


def _resolve(refs: list[dict], images: dict, anns: dict, instances_file: Path) -> None:
    """Every ref must point at an image and an annotation that exist, on the same image."""
    for ref in refs:
        if ref["image_id"] not in images:
            raise DataError(f"{instances_file}: ref {ref['ref_id']} points to image id {ref['image_id']}, "
                            "which is not among its images")
        ann = anns.get(ref["ann_id"])
        if ann is None:
            raise DataError(f"{instances_file}: ref {ref['ref_id']} points to annotation id {ref['ann_id']}, "
                            "which is not among its annotations")
        if ann.get("image_id", ref["image_id"]) != ref["image_id"]:
            raise DataError(f"{instances_file}: ref {ref['ref_id']} is on image {ref['image_id']} but its "
                            f"annotation {ref['ann_id']} is on image {ann['image_id']}")


def _samples(ref: dict, level: str, sentence: int, refs_file: Path) -> list[tuple[str, dict]]:
    """(sample id, sentence) pairs one ref contributes."""
    sentences = ref["sentences"]
    if level == "instance":
        if sentence >= len(sentences):
            raise DataError(f"{refs_file}: ref {ref['ref_id']} has {len(sentences)} sentences; the spec asks "
                            f"for sentence {sentence} (instance level uses one sentence per ref)")
        return [(f"ref{ref['ref_id']}", sentences[sentence])]
    if not sentences:
        raise DataError(f"{refs_file}: ref {ref['ref_id']} has no sentences")
    return [(f"ref{ref['ref_id']}_s{s.get('sent_id', i)}", s) for i, s in enumerate(sentences)]


def load_refer(spec: dict, *, dataset: str, setting: str = "refer dataset", check_images: bool = True,
               skip_unreadable: bool = False, skipped: list[dict] | None = None) -> list[dict]:
    """Evaluation-manifest rows of one REFER split.

    check_images=False skips reading the images (for benchmarks of the annotation work only).
    With skip_unreadable, refs on missing or unreadable images are dropped and recorded in `skipped`.
    """
    from rise.data.images import inspect_images, reject_images

    level, sentence, split = _options(spec, setting)
    refs_file, instances_file, image_folder = refer_paths(spec, setting)
    refs = refs_of_split(read_refs(refs_file), split, refs_file)
    images, anns = read_instances(instances_file, {r["image_id"] for r in refs}, {r["ann_id"] for r in refs})
    _resolve(refs, images, anns, instances_file)
    plan = [(ref, _samples(ref, level, sentence, refs_file)) for ref in refs]

    def image_path(image_id) -> str:
        return str(image_folder / images[image_id]["file_name"])

    if check_images:  # before the masks: a wrong folder fails in seconds, not after the whole split
        samples: dict[str, list[str]] = {}
        for ref, pairs in plan:
            samples.setdefault(image_path(ref["image_id"]), []).extend(sid for sid, _ in pairs)
        found_images = inspect_images(samples)
        problems = {}
        for path, found in found_images.items():
            if isinstance(found, str):
                problems[path] = found
        for image in images.values():
            found = found_images.get(str(image_folder / image["file_name"]))
            if isinstance(found, tuple) and (found[0], found[1]) != (image["width"], image["height"]):
                problems[str(image_folder / image["file_name"])] = (
                    f"is {found[0]}x{found[1]} but {instances_file.name} says {image['width']}x{image['height']}")
        reject_images(problems, samples, setting=setting, skip=skip_unreadable,
                      skipped=skipped if skipped is not None else [],
                      expected=f"COCO images under {image_folder} named by {instances_file}")
        plan = [(ref, pairs) for ref, pairs in plan if image_path(ref["image_id"]) not in problems]

    source = f"{spec['dataset']}({spec['split_by']})"
    rows = []
    for ref, pairs in plan:
        image = images[ref["image_id"]]
        height, width = int(image["height"]), int(image["width"])
        mask = _ann_rle(anns[ref["ann_id"]], height, width, str(instances_file))  # shared by the ref's rows
        path = image_path(ref["image_id"])
        for sample_id, sent in pairs:
            text = _sentence_text(sent)
            if not text:
                raise DataError(f"{refs_file}: ref {ref['ref_id']} has an empty sentence "
                                f"(sent_id {sent.get('sent_id')})")
            rows.append({
                "sample_id": sample_id, "image": path, "instruction": text, "height": height, "width": width,
                "mask": mask, "ignore": None, "dataset": dataset, "split": split,
                "source_id": f"{source}:ref={ref['ref_id']}:ann={ref['ann_id']}:image={ref['image_id']}"
                             f":sent={sent.get('sent_id', '?')}",
            })
    log.info("%s: %d refs -> %d %s-level rows from %s", setting, len(plan), len(rows), level, refs_file)
    return rows


def describe_refer(spec: dict, *, setting: str = "refer dataset", skip_unreadable: bool = False) -> dict:
    """Counts for `check-data`: refs, sentences and images of the split; whether every image file exists."""
    from rise.data.images import reject_images

    level, sentence, split = _options(spec, setting)
    refs_file, instances_file, image_folder = refer_paths(spec, setting)
    refs = refs_of_split(read_refs(refs_file), split, refs_file)
    images, anns = read_instances(instances_file, {r["image_id"] for r in refs}, {r["ann_id"] for r in refs})
    _resolve(refs, images, anns, instances_file)
    samples: dict[str, list[str]] = {}
    for ref in refs:
        samples.setdefault(str(image_folder / images[ref["image_id"]]["file_name"]), []).append(f"ref{ref['ref_id']}")
    missing = {p: "does not exist" for p in samples if not Path(p).is_file()}  # a stat each: cheap
    reject_images(missing, samples, setting=setting, skip=skip_unreadable, skipped=[],
                  expected=f"COCO images under {image_folder} named by {instances_file}")
    sentences = sum(len(r["sentences"]) for r in refs)
    return {"split": split, "level": level, "refs_file": str(refs_file), "instances_file": str(instances_file),
            "image_folder": str(image_folder), "refs": len(refs), "sentences": sentences,
            "images": len(samples), "images_missing": len(missing),
            "samples": len(refs) if level == "instance" else sentences,
            "mask_source": f"{instances_file.name} segmentation (polygons/RLE) via pycocotools"}


# The loader registry's entries (rise/data/__init__.py).
PATHS = ("root", "images")


def load(spec: dict, request) -> list[dict]:
    return load_refer(spec, dataset=request.dataset, setting=request.setting,
                      skip_unreadable=request.skip_unreadable, skipped=request.skipped)


def describe(spec: dict, request) -> dict:
    return describe_refer(spec, setting=request.setting, skip_unreadable=request.skip_unreadable)
