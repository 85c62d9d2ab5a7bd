"""Dataset loaders: each turns one `presets.<preset>.datasets.<name>` entry into an evaluation manifest.

`LOADERS` maps the entry's `loader` field to a module with `load(spec, request) -> rows`,
`describe(spec, request) -> what was found` and `PATHS` (the path-valued fields checked before any
long work). Every loader writes the same schema (rise/contracts.py), so the stages after
`prepare-data` are identical for demo and paper data. Real loaders: refer (rise/data/refer.py), hf
(hf.py), reasonseg (reasonseg.py), imagenet (imagenet.py); docs/data.md describes the folder layout
each expects. Generated ones: synthetic (the demo, synthetic.py) and toy (the toy world,
toy_world.py). A new loader is a module here with those three names and one line in `LOADERS`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from rise.config import Settings
from rise.contracts import write_jsonl
from rise.data import hf, imagenet, reasonseg, refer, synthetic, toy_world
from rise.errors import ConfigError, MissingResourceError

log = logging.getLogger(__name__)

LOADERS = {"synthetic": synthetic, "toy": toy_world, "refer": refer, "hf": hf, "reasonseg": reasonseg,
           "imagenet": imagenet}


@dataclass
class LoadRequest:
    """What a loader gets beside its dataset entry."""

    settings: Settings
    dataset: str                # the entry's name
    image_dir: Path             # where a loader that writes images puts them
    seed: int                   # the entry's `seed`, else the top-level one
    skip_unreadable: bool = False
    skipped: list[dict] = field(default_factory=list)  # filled with what `skip_unreadable` dropped

    @property
    def setting(self) -> str:
        """The entry's place in params.yaml, for messages."""
        return f"presets.{self.settings.preset}.datasets.{self.dataset}"


def _loader(settings: Settings, name: str):
    if name not in settings.datasets:
        raise MissingResourceError(f"dataset '{name}' is not defined under presets.{settings.preset}.datasets")
    loader = settings.datasets[name]["loader"]
    if loader not in LOADERS:
        raise ConfigError(f"presets.{settings.preset}.datasets.{name}.loader: unknown loader '{loader}' "
                          f"(known: {sorted(LOADERS)})")
    return LOADERS[loader]


def _request(settings: Settings, name: str) -> LoadRequest:
    spec = settings.datasets[name]
    return LoadRequest(settings, name, settings.layout.dataset_images(name), spec.get("seed", settings.seed),
                       skip_unreadable=bool(spec.get("skip_unreadable", False)))


def check_dataset(settings: Settings, name: str) -> None:
    """Raises MissingResourceError naming the setting whose path is unset or absent."""
    spec, loader = settings.datasets[name], _loader(settings, name)
    setting = _request(settings, name).setting
    for key in loader.PATHS:
        value = spec.get(key)
        if value is None:
            raise MissingResourceError(f"{setting}.{key} is not set (the {spec['loader']} loader needs it)")
        if loader is hf and key == "path" and not Path(value).exists() and hf.looks_like_hub_id(value):
            hf.hub_snapshot(value, setting)  # raises if unavailable
            continue
        if not Path(value).exists():
            raise MissingResourceError(f"{setting}.{key}: '{value}' does not exist")


def _skipped_file(manifest: Path) -> Path:
    return manifest.with_name(manifest.name.removesuffix(".jsonl") + ".skipped.jsonl")


def load_rows(settings: Settings, name: str, manifest: Path | None = None) -> list[dict]:
    """Evaluation-manifest rows of one dataset.

    With `skip_unreadable: true` in the dataset entry, missing or unreadable images are dropped and
    listed in `<manifest>.skipped.jsonl` (manifest defaults to the run layout's path); otherwise the
    first one fails the stage before the long work starts.
    """
    loader, request = _loader(settings, name), _request(settings, name)
    rows = loader.load(settings.datasets[name], request)
    skipped_file = _skipped_file(Path(manifest) if manifest else settings.layout.dataset_manifest(name))
    if request.skip_unreadable:
        write_jsonl(skipped_file, request.skipped)  # written even when empty, so an old list never lingers
    elif skipped_file.exists():
        skipped_file.unlink()  # from an earlier run that skipped; this run skips nothing
    return rows


def describe_dataset(settings: Settings, name: str) -> dict:
    """What a dataset entry points at, found without building its manifest (for `check-data`).

    Returns counts (images, refs, samples) where they are cheap to get, the image folder and where
    masks come from; raises MissingResourceError / DataError naming the path at fault.
    """
    loader = _loader(settings, name)
    found = loader.describe(settings.datasets[name], _request(settings, name))
    return {"dataset": name, "loader": settings.datasets[name]["loader"], **found}


def prepare_dataset(settings: Settings, name: str) -> Path:
    rows = load_rows(settings, name)
    if not rows:
        raise MissingResourceError(f"presets.{settings.preset}.datasets.{name}: the split is empty")
    out = settings.layout.dataset_manifest(name)
    write_jsonl(out, rows)
    log.info("%s: %d samples from %d images -> %s", name, len(rows), len({r['image'] for r in rows}), out)
    return out
