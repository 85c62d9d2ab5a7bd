"""Image checks shared by the real loaders: every image decoded once before any long work, and a bad
one either fails the stage naming itself or is skipped and listed (`skip_unreadable`)."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from rise.errors import DataError, MissingResourceError

log = logging.getLogger(__name__)

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
