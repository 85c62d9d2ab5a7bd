"""Benchmark: building the instance-level manifest rows of a RefCOCOg-train-sized REFER split.

Workload (synthetic, the size of RefCOCOg umd): 25,799 images, 208,960 annotations in
instances.json (REFER keeps every COCO annotation of its images, not only the referred ones),
49,822 refs with 95,010 sentences, all in split "train". Segmentations are star-shaped polygons
of 14-26 vertices (about 20, as COCO's) with two decimals; one object in ten has two parts.
Images are not written: the loader runs with check_images=False, which skips only the image
check (each image read and decoded at 1/8 scale, in threads before the masks; about 2 ms per
COCO image).

What is timed: `rise.data.refer.load_refer` from reading refs(umd).p and instances.json to the
last row (masks as RLE through pycocotools' frPyObjects + merge). The fixture is generated in a
child process (cached under --workdir), so the peak memory reported (ru_maxrss of this process)
is the loader's plus the interpreter's. Writing the rows as JSONL is timed separately, after the
peak is taken.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/data.py [--workdir /tmp/rise-bench-refer]
Last line of output: {"wall_s", "peak_mib", "rows"}. Target (2-core CPU): wall_s < 60, peak_mib < 2048.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

IMAGES, ANNOTATIONS, REFS, SENTENCES = 25_799, 208_960, 49_822, 95_010
FIXTURE_VERSION = "v1"
WORDS = ("man woman left right red blue shirt holding table chair near behind front small large white "
         "black dog cat car person standing sitting wearing green the a with on in of").split()


def generate(folder: Path, seed: int = 0) -> None:
    """Writes <folder>/refer/refcocog/{instances.json, refs(umd).p} and an empty images folder."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = np.array([(640, 480), (480, 640), (640, 427), (500, 375), (640, 360)])
    image_sizes = sizes[rng.integers(0, len(sizes), IMAGES)]
    images = [{"id": i + 1, "file_name": f"COCO_train2014_{i + 1:012d}.jpg", "width": int(w), "height": int(h)}
              for i, (w, h) in enumerate(image_sizes)]
    owner = np.sort(rng.integers(0, IMAGES, ANNOTATIONS))
    owner[:IMAGES] = np.arange(IMAGES)  # every image has at least one object
    owner.sort()
    annotations = []
    for k in range(ANNOTATIONS):
        w, h = image_sizes[owner[k]]
        parts = []
        for _ in range(2 if rng.random() < 0.1 else 1):
            n = int(rng.integers(14, 27))
            radius = rng.uniform(10, min(w, h) / 4)
            cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = radius * rng.uniform(0.5, 1.0, n)
            xy = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).round(2)
            parts.append(xy.ravel().tolist())
        xs, ys = parts[0][0::2], parts[0][1::2]
        annotations.append({"id": k + 1, "image_id": int(owner[k]) + 1, "category_id": int(rng.integers(1, 91)),
                            "iscrowd": 0, "area": 0.0, "segmentation": parts,
                            "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
    referred = np.sort(rng.choice(ANNOTATIONS, REFS, replace=False))
    two_sentences = set(rng.choice(REFS, SENTENCES - REFS, replace=False).tolist())
    refs, sent_id = [], 0
    for ref_id, k in enumerate(referred):
        sentences = []
        for _ in range(2 if ref_id in two_sentences else 1):
            tokens = [WORDS[j] for j in rng.integers(0, len(WORDS), int(rng.integers(4, 14)))]
            sentences.append({"raw": " ".join(tokens).capitalize() + ".", "sent": " ".join(tokens),
                              "sent_id": sent_id, "tokens": tokens})
            sent_id += 1
        ann = annotations[k]
        refs.append({"ref_id": ref_id, "ann_id": ann["id"], "image_id": ann["image_id"],
                     "category_id": ann["category_id"], "split": "train", "sentences": sentences,
                     "sent_ids": [s["sent_id"] for s in sentences],
                     "file_name": f"COCO_train2014_{ann['image_id']:012d}_{ann['id']}.jpg"})
    target = folder / "refer" / "refcocog"
    target.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    with (target / "instances.json").open("w") as fh:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 91)]}, fh)
    with (target / "refs(umd).p").open("wb") as fh:
        pickle.dump(refs, fh, protocol=pickle.HIGHEST_PROTOCOL)
    (folder / "READY").write_text(FIXTURE_VERSION)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "rise-bench-refer"))
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.workdir)
    if args.generate_only:
        generate(folder)
        return 0
    ready = folder / "READY"
    if not ready.exists() or ready.read_text() != FIXTURE_VERSION:
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--workdir", str(folder), "--generate-only"], check=True)
        print(f"fixture generated in {time.perf_counter() - started:.1f}s under {folder}")
    instances = folder / "refer" / "refcocog" / "instances.json"
    print(f"instances.json {instances.stat().st_size / 2**20:.0f} MiB, "
          f"refs(umd).p {(instances.parent / 'refs(umd).p').stat().st_size / 2**20:.0f} MiB; "
          f"{os.cpu_count()} CPUs")

    from rise.contracts import write_jsonl
    from rise.data.refer import load_refer

    spec = {"loader": "refer", "root": str(folder / "refer"), "dataset": "refcocog", "split_by": "umd",
            "split": "train", "images": str(folder / "images"), "level": "instance"}
    baseline = peak_mib()
    started = time.perf_counter()
    rows = load_refer(spec, dataset="refcocog_train", check_images=False)
    wall = time.perf_counter() - started
    peak = peak_mib()
    print(f"interpreter and imports before loading: {baseline:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        write_jsonl(Path(tmp) / "refcocog_train.jsonl", rows)
        written = time.perf_counter() - started
        size = (Path(tmp) / "refcocog_train.jsonl").stat().st_size
    print(f"writing the manifest (not in wall_s): {written:.1f}s, {size / 2**20:.0f} MiB")
    print(json.dumps({"wall_s": round(wall, 2), "peak_mib": round(peak, 1), "rows": len(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
