"""Training sets: a seeded uniform sample of image-instruction pairs, with all geometry dropped."""
from __future__ import annotations

import logging
import random
import zlib
from pathlib import Path

from rise.config import Settings
from rise.contracts import TRAIN_FIELDS, check_train_rows, load_eval_manifest, write_jsonl
from rise.errors import DataError

log = logging.getLogger(__name__)


def sample_pairs(pool: list[dict], n: int, seed: int, name: str) -> list[dict]:
    if n > len(pool):
        raise DataError(f"train set '{name}' asks for {n} pairs but its dataset has {len(pool)}")
    ordered = sorted(pool, key=lambda r: r["sample_id"])  # independent of the pool file's order
    rng = random.Random((seed * 1_000_003 + zlib.crc32(name.encode())) & 0xFFFFFFFF)
    picked = sorted(rng.sample(range(len(ordered)), n))
    return [{k: ordered[i][k] for k in TRAIN_FIELDS} for i in picked]


def sample_train_set(settings: Settings, name: str) -> Path:
    spec = settings.train_sets[name]
    pool_file = settings.layout.dataset_manifest(spec["dataset"])
    rows = sample_pairs(load_eval_manifest(pool_file), spec["n"], settings.seed, name)
    out = settings.layout.train_manifest(name)
    check_train_rows(rows, out)
    write_jsonl(out, rows)
    log.info("%s: %d pairs sampled from %s -> %s", name, len(rows), pool_file, out)
    return out
