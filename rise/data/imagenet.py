"""ImageNet-1K train images as a training pool: `<root>/<wnid>/*.JPEG` plus a synsets file.

The synsets file maps a WordNet id to its class names, one line each, as ILSVRC's
LOC_synset_mapping.txt: `n01440764 tench, Tinca tinca`. The instruction of an image is its class
name: the first synonym (spec `synonym: first`, default) or the whole comma-separated list
(`synonym: all`).

There are no masks: rows carry `mask: null` and `ignore: null`, which only a training pool may have
(RISE-ClsOnly samples image-instruction pairs from it). Enumeration is sorted by class folder then
file name, so the pool (and the seeded sample drawn from it) is the same on every machine.

ImageNet train has 1.28M images, so images are not read by default: the files are found by
listing the folders (so they exist) and `height`/`width` are null. `read_sizes: true` reads and
decodes every image (rise.data.inspect_images; tens of minutes), fills in the sizes and checks that
each image can be read. Training decodes its sampled images before its first step either way.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from rise.errors import ConfigError, DataError, MissingResourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SYNONYM_CHOICES = ("first", "all")


def read_synsets(path: Path) -> dict[str, str]:
    """wnid -> the names after it on its line ("tench, Tinca tinca")."""
    names: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc}); expected lines like 'n01440764 tench, Tinca tinca'") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        wnid, _, rest = line.strip().partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit()) or not rest.strip():
            raise DataError(f"{path}:{lineno}: '{line.strip()}' is not '<wnid> <names>' "
                            "(expected lines like 'n01440764 tench, Tinca tinca')")
        names[wnid] = rest.strip()
    if not names:
        raise DataError(f"{path} is empty (expected one line per class: 'n01440764 tench, Tinca tinca')")
    return names


def class_name(names: str, synonym: str) -> str:
    return names.split(",")[0].strip() if synonym == "first" else names


def _inputs(spec: dict, setting: str) -> tuple[Path, Path, str]:
    for key in ("root", "synsets"):
        if spec.get(key) in (None, ""):
            raise ConfigError(f"{setting}.{key} is not set (the imagenet loader needs root and synsets)")
    root, synsets = Path(spec["root"]), Path(spec["synsets"])
    if not root.is_dir():
        raise MissingResourceError(f"{setting}.root: {root} is not a folder (expected ImageNet's train/<wnid>/*.JPEG)")
    if not synsets.is_file():
        raise MissingResourceError(f"{setting}.synsets: {synsets} does not exist (expected a wnid-to-names "
                                   "list like LOC_synset_mapping.txt)")
    synonym = spec.get("synonym", "first")
    if synonym not in SYNONYM_CHOICES:
        raise ConfigError(f"{setting}.synonym is '{synonym}'; expected one of {list(SYNONYM_CHOICES)}")
    return root, synsets, synonym


def class_folders(root: Path, synsets: Path, names: dict[str, str]) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root} has no class folders (expected ImageNet's train/<wnid>/*.JPEG)")
    unknown = [p.name for p in folders if p.name not in names]
    if unknown:
        raise DataError(f"{root}: class folder {unknown[0]} (and {len(unknown) - 1} more) is not in {synsets}")
    return folders


def list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:  # scandir: no stat per file, which matters at 1.28M files
        return sorted(e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)


def load_imagenet(spec: dict, *, dataset: str, setting: str = "imagenet dataset", skip_unreadable: bool = False,
                  skipped: list[dict] | None = None) -> list[dict]:
    """Training-pool rows (mask null) of every image under root, sorted."""
    from rise.data.images import inspect_images, reject_images

    root, synsets, synonym = _inputs(spec, setting)
    names = read_synsets(synsets)
    split = spec.get("split", root.name)
    rows = []
    for folder in class_folders(root, synsets, names):
        instruction = class_name(names[folder.name], synonym)
        for file in list_images(folder):
            path = str(folder / file)
            rows.append({
                "sample_id": os.path.splitext(file)[0], "image": path, "instruction": instruction,
                "height": None, "width": None, "mask": None, "ignore": None, "dataset": dataset,
                "split": split, "source_id": f"imagenet:{folder.name}/{file}", "kind": "classname",
            })
    if not rows:
        raise DataError(f"{root}: the class folders hold no .JPEG images")
    if spec.get("read_sizes", False):
        found_images = inspect_images(r["image"] for r in rows)
        problems = {p: found for p, found in found_images.items() if isinstance(found, str)}
        reject_images(problems, {r["image"]: [r["sample_id"]] for r in rows}, setting=setting,
                      skip=skip_unreadable, skipped=skipped if skipped is not None else [],
                      expected=f"ImageNet images under {root}")
        rows = [r for r in rows if r["image"] not in problems]
        for row in rows:
            row["width"], row["height"] = found_images[row["image"]][:2]
    log.info("%s: %d images of %d classes from %s", setting, len(rows), len({r['instruction'] for r in rows}), root)
    return rows


def describe_imagenet(spec: dict, *, setting: str = "imagenet dataset", skip_unreadable: bool = False) -> dict:
    """Counts for `check-data`: classes, synsets and images (one listing per class folder)."""
    root, synsets, synonym = _inputs(spec, setting)
    names = read_synsets(synsets)
    folders = class_folders(root, synsets, names)
    counts = [len(list_images(f)) for f in folders]
    if not sum(counts):
        raise DataError(f"{root}: the class folders hold no .JPEG images")
    return {"split": spec.get("split", root.name), "image_folder": str(root), "classes": len(folders),
            "synsets": len(names), "images": sum(counts), "samples": sum(counts),
            "empty_classes": sum(c == 0 for c in counts), "instruction": f"class name ({synonym} synonym)",
            "mask_source": "none (classification images: mask null, usable as a training pool only)"}


# The loader registry's entries (rise/data/__init__.py).
PATHS = ("root", "synsets")


def load(spec: dict, request) -> list[dict]:
    return load_imagenet(spec, dataset=request.dataset, setting=request.setting,
                         skip_unreadable=request.skip_unreadable, skipped=request.skipped)


def describe(spec: dict, request) -> dict:
    return describe_imagenet(spec, setting=request.setting, skip_unreadable=request.skip_unreadable)
