"""The toy world's stages as functions of the settings: data, the three pretraining stages and
their reports. Pretraining settings live in params.yaml under `presets.toy.pretrain`.

Each stage writes its model where `presets.toy.models` names it and a report (what it reached,
how long it took) beside it as `<model>.report.json`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from rise.config import Settings
from rise.contracts import write_json, write_jsonl
from rise.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("clip", "sam2", "policy")


def pretrain_settings(settings: Settings) -> dict:
    """`presets.<preset>.pretrain` of the settings file (read here until rise.config carries it)."""
    raw = yaml.safe_load(Path(settings.source).read_text())
    block = raw["presets"][settings.preset].get("pretrain")
    if not block:
        raise ConfigError(f"{settings.source}: presets.{settings.preset}.pretrain is not set "
                          "(the toy pretraining stages need it)")
    return block


def report_file(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".report.json")


def prepare_toy_dataset(settings: Settings, name: str) -> Path:
    """A dataset entry with `loader: toy` -> its evaluation manifest (rise/contracts.py)."""
    from rise.toy.world import write_split

    spec = settings.datasets[name]
    if spec["loader"] != "toy":
        raise ConfigError(f"presets.{settings.preset}.datasets.{name}: loader is '{spec['loader']}', not toy")
    rows = write_split(name, spec["split"], spec["n_images"], spec["families"], settings.layout.dataset_images(name),
                       spec.get("seed", settings.seed), tuple(spec.get("n_objects", (2, 4))))
    out = settings.layout.dataset_manifest(name)
    write_jsonl(out, rows)
    log.info("%s: %d samples -> %s", name, len(rows), out)
    return out


def pretrain(settings: Settings, stage: str) -> Path:
    """Runs one pretraining stage and its held-out report; returns the report file."""
    p = pretrain_settings(settings)
    seed = p.get("seed", settings.seed)
    models = settings.models
    if stage == "clip":
        from rise.toy.clip import clip_report, pretrain_clip

        out = models["clip"]["pretrained"]
        c = p["clip"]
        trained = pretrain_clip(out, steps=c["steps"], seed=seed, batch_size=c["batch_size"],
                                learning_rate=c["learning_rate"])
        report = clip_report(out, seed=seed, n_scenes=c.get("report_scenes", 200))
    elif stage == "sam2":
        from rise.toy.sam2 import pretrain_sam2, sam2_report

        sam = models["sam2"]
        out, s = sam["checkpoint"], p["sam2"]
        trained = pretrain_sam2(out, config=sam["config"], image_size=sam["image_size"], steps=s["steps"], seed=seed,
                                batch_size=s["batch_size"], learning_rate=s["learning_rate"])
        report = sam2_report(out, config=sam["config"], image_size=sam["image_size"], seed=seed,
                             n_images=s.get("report_images", 100))
    elif stage == "policy":
        from rise.toy.policy import build_toy_policy, choice_report, policy_report, pretrain_policy, pretrain_vision

        out, s = next(iter(models["policies"].values())), p["policy"]
        if len(set(models["policies"].values())) != 1:
            raise ConfigError(f"presets.{settings.preset}.models.policies: the toy world pretrains one policy; "
                              "every key must name the same folder")
        build_toy_policy(out, seed=seed, dims=s.get("dims"))
        vision = pretrain_vision(out, steps=s["vision_steps"], seed=seed,
                                 floor_position=s.get("vision_floor_position", True))
        trained = pretrain_policy(out, steps=s["steps"], one_object_steps=s["one_object_steps"],
                                  short_prompt_steps=s.get("short_prompt_steps", 0),
                                  segzero_share=s.get("segzero_share", 0.0), nonce_share=s.get("nonce_share", 0.0),
                                  seed=seed, batch_size=s["batch_size"], learning_rate=s["learning_rate"])
        trained = {"vision_tower": vision, "answers": trained}
        report = {"greedy": policy_report(out, seed=seed, n_images=s.get("report_images", 64)),
                  "sampled": choice_report(out, seed=seed, n_images=s.get("report_images", 64))}
    else:
        raise ConfigError(f"unknown toy pretraining stage '{stage}' (known: {STAGES})")
    result = report_file(out)
    write_json(result, {"stage": stage, "model": str(out), "training": trained, "heldout": report})
    log.info("toy %s: %s %s -> %s", stage, trained, report, result)
    return result
