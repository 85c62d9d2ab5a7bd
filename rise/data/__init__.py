"""Dataset loaders: each turns one `presets.<preset>.datasets.<name>` entry into an evaluation manifest.

Loaders are looked up by the entry's `loader` field. Every loader writes the same schema
(rise/contracts.py), so the stages after `prepare-data` are identical for demo and paper data.
Real loaders: refer (rise/data/refer.py), hf (hf.py), reasonseg (reasonseg.py), imagenet
(imagenet.py); docs/data.md describes the folder layout each expects. Generated ones: synthetic
(the demo, synthetic.py) and toy (the toy world, rise/toy/world.py).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rise.config import Settings
from rise.contracts import write_jsonl
from rise.errors import ConfigError, DataError, MissingResourceError

log = logging.getLogger(__name__)

# Path-valued fields of each real loader, checked before any long work starts.
REAL_LOADER_PATHS = {
    "refer": ("root", "images"),
    "hf": ("path",),
    "reasonseg": ("root",),
    "imagenet": ("root", "synsets"),
}


def check_dataset(settings: Settings, name: str) -> None:
    spec = settings.datasets[name]
    for key in REAL_LOADER_PATHS.get(spec["loader"], ()):
        value = spec.get(key)
        setting = f"presets.{settings.preset}.datasets.{name}.{key}"
        if value is None:
            raise MissingResourceError(f"{setting} is not set (the {spec['loader']} loader needs it)")
        if spec["loader"] == "hf" and key == "path" and not Path(value).exists():
            from rise.data.hf import hub_snapshot, looks_like_hub_id

            if looks_like_hub_id(value):
                hub_snapshot(value, f"presets.{settings.preset}.datasets.{name}")  # raises if unavailable
                continue
        if not Path(value).exists():
            raise MissingResourceError(f"{setting}: '{value}' does not exist")


# --------------------------------------------------------------------------------------------- images

def inspect_images(paths) -> dict[str, tuple[int, int, int] | str]:
    """(width, height, EXIF orientation) of each image, or a sentence saying why it cannot be read.

    Each file is decoded to its end, so a truncated or corrupt file counts as unreadable here and not
    when a later stage draws it. JPEGs decode at 1/8 scale (every byte is still read and entropy-
    decoded; the pixel work shrinks 64x): about 2 ms per COCO image. Threads, because decoding
    releases the GIL and file-system latency dominates on network storage.
    """
    from PIL import Image, UnidentifiedImageError

    def orientation(im) -> int:
        try:
            return int(im.getexif().get(0x0112, 1) or 1)  # EXIF "Orientation"; 1 = stored upright
        except Exception:  # a damaged EXIF block does not make the pixels unreadable
            return 1

    def inspect(path: str):
        try:
            with Image.open(path) as im:
                width, height = im.size
                found = (width, height, orientation(im))
                im.draft(None, (1, 1))  # JPEG: the smallest DCT scale; other formats ignore it
                im.load()
                return found
        except FileNotFoundError:
            return "does not exist"
        except IsADirectoryError:
            return "is a folder, not an image"
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            return f"cannot be read ({type(exc).__name__}: {exc})"

    paths = list(dict.fromkeys(str(p) for p in paths))
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(paths, pool.map(inspect, paths, chunksize=64)))


def reject_images(problems: dict[str, str], samples: dict[str, list[str]], *, setting: str, expected: str,
                  skip: bool, skipped: list[dict], total: int | None = None) -> None:
    """Either fail naming the first bad image, or (skip_unreadable) record every bad one in `skipped`.

    `problems` maps an image to what is wrong with it; `samples` maps an image to the sample ids
    that use it, so the skipped list says what was lost; `total` is the number of images checked
    (default: len(samples)).
    """
    if not problems:
        return
    if skip:
        for path, reason in sorted(problems.items()):
            skipped.append({"image": path, "reason": reason, "samples": samples.get(path, [])})
        log.warning("%s: skipping %d unreadable or missing images (%d samples)", setting, len(problems),
                    sum(len(samples.get(p, [])) for p in problems))
        return
    missing = sorted(p for p, reason in problems.items() if reason == "does not exist")
    first = missing[0] if missing else sorted(problems)[0]
    total = total if total is not None else max(len(samples), len(problems))
    message = (f"{setting}: {len(problems)} of {total} images are missing or unreadable; first: {first} "
               f"{problems[first]} (expected {expected}). Fix the files or set skip_unreadable: true in "
               f"the dataset entry to skip them (they are then listed in <manifest>.skipped.jsonl)")
    raise (MissingResourceError if missing else DataError)(message)


# --------------------------------------------------------------------------------------------- loading

def _setting(settings: Settings, name: str) -> str:
    return f"presets.{settings.preset}.datasets.{name}"


def _skipped_file(manifest: Path) -> Path:
    return manifest.with_name(manifest.name.removesuffix(".jsonl") + ".skipped.jsonl")


def load_rows(settings: Settings, name: str, manifest: Path | None = None) -> list[dict]:
    """Evaluation-manifest rows of one dataset.

    With `skip_unreadable: true` in the dataset entry, missing or unreadable images are dropped and
    listed in `<manifest>.skipped.jsonl` (manifest defaults to the run layout's path); otherwise the
    first one fails the stage before the long work starts.
    """
    spec = settings.datasets[name]
    loader = spec["loader"]
    if loader == "synthetic":
        from rise.data.synthetic import generate

        return generate(name, spec["split"], spec["n_images"], spec["kinds"],
                        settings.layout.dataset_images(name), settings.seed)
    if loader == "toy":  # the toy world (docs/toy.md): seeded scenes with exact masks
        from rise.toy.world import write_split

        if "shade" in spec["families"] and not (settings.pretrain or {}).get("shade_words", False):
            raise ConfigError(f"{settings.source}: {_setting(settings, name)}.families has 'shade', but "
                              f"presets.{settings.preset}.pretrain.shade_words is off, so neither the policy's "
                              "tokenizer nor CLIP was taught its words: set shade_words: true")

        return write_split(name, spec["split"], spec["n_images"], spec["families"],
                           settings.layout.dataset_images(name), spec.get("seed", settings.seed),
                           tuple(spec.get("n_objects", (2, 4))))
    setting = _setting(settings, name)  # each loader checks its own paths, saying what it expected there
    skip = bool(spec.get("skip_unreadable", False))
    skipped: list[dict] = []
    common = {"dataset": name, "setting": setting, "skip_unreadable": skip, "skipped": skipped}
    if loader == "refer":
        from rise.data.refer import load_refer

        rows = load_refer(spec, **common)
    elif loader == "hf":
        from rise.data.hf import load_hf

        rows = load_hf(spec, image_dir=settings.layout.dataset_images(name), **common)
    elif loader == "reasonseg":
        from rise.data.reasonseg import load_reasonseg

        rows = load_reasonseg(spec, image_dir=settings.layout.dataset_images(name), **common)
    elif loader == "imagenet":
        from rise.data.imagenet import load_imagenet

        rows = load_imagenet(spec, **common)
    else:
        raise ConfigError(f"{setting}.loader: unknown loader '{loader}'")
    skipped_file = _skipped_file(Path(manifest) if manifest else settings.layout.dataset_manifest(name))
    if skip:
        write_jsonl(skipped_file, skipped)  # written even when empty, so an old list never lingers
    elif skipped_file.exists():
        skipped_file.unlink()  # from an earlier run that skipped; this run skips nothing
    return rows


def describe_dataset(settings: Settings, name: str) -> dict:
    """What a dataset entry points at, found without building its manifest (for `check-data`).

    Returns counts (images, refs, samples) where they are cheap to get, the image folder and where
    masks come from; raises MissingResourceError / DataError naming the path at fault.
    """
    if name not in settings.datasets:
        raise MissingResourceError(f"dataset '{name}' is not defined under presets.{settings.preset}.datasets")
    spec = settings.datasets[name]
    loader = spec["loader"]
    setting = _setting(settings, name)
    if loader == "synthetic":
        return {"dataset": name, "loader": loader, "split": spec["split"], "images": spec["n_images"],
                "image_folder": str(settings.layout.dataset_images(name)),
                "mask_source": "drawn with the synthetic images (exact)"}
    if loader == "toy":
        return {"dataset": name, "loader": loader, "split": spec["split"], "images": spec["n_images"],
                "families": ",".join(spec["families"]), "image_folder": str(settings.layout.dataset_images(name)),
                "mask_source": "drawn with the toy world's images (exact)"}
    skip = bool(spec.get("skip_unreadable", False))
    if loader == "refer":
        from rise.data.refer import describe_refer as describe
    elif loader == "hf":
        from rise.data.hf import describe_hf as describe
    elif loader == "reasonseg":
        from rise.data.reasonseg import describe_reasonseg as describe
    elif loader == "imagenet":
        from rise.data.imagenet import describe_imagenet as describe
    else:
        raise ConfigError(f"{setting}.loader: unknown loader '{loader}'")
    found = describe(spec, setting=setting, skip_unreadable=skip)
    return {"dataset": name, "loader": loader, **found}


def prepare_dataset(settings: Settings, name: str) -> Path:
    if name not in settings.datasets:
        raise MissingResourceError(f"dataset '{name}' is not defined under presets.{settings.preset}.datasets")
    rows = load_rows(settings, name)
    if not rows:
        raise MissingResourceError(f"presets.{settings.preset}.datasets.{name}: the split is empty")
    out = settings.layout.dataset_manifest(name)
    write_jsonl(out, rows)
    log.info("%s: %d samples from %d images -> %s", name, len(rows), len({r['image'] for r in rows}), out)
    return out
