"""Dataset loaders: each turns one `presets.<preset>.datasets.<name>` entry into an evaluation manifest.

Loaders are looked up by the entry's `loader` field. Every loader writes the same schema
(rise/contracts.py), so the stages after `prepare-data` are identical for demo and paper data.
"""
from __future__ import annotations

import logging
from pathlib import Path

from rise.config import Settings
from rise.contracts import write_jsonl
from rise.errors import MissingResourceError

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
        if not Path(value).exists():
            raise MissingResourceError(f"{setting}: '{value}' does not exist")


def load_rows(settings: Settings, name: str) -> list[dict]:
    spec = settings.datasets[name]
    loader = spec["loader"]
    if loader == "synthetic":
        from rise.data.synthetic import generate

        return generate(name, spec["split"], spec["n_images"], spec["kinds"],
                        settings.layout.dataset_images(name), settings.seed)
    check_dataset(settings, name)
    raise MissingResourceError(
        f"presets.{settings.preset}.datasets.{name}: the '{loader}' loader is not available in this version")


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
