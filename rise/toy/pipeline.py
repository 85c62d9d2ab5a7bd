"""The toy world's stages as functions of the settings: data, the three pretraining stages and
their reports. Pretraining settings live in params.yaml under `presets.toy.pretrain`.

Each stage writes its model where `presets.toy.models` names it and a report (what it reached,
how long it took) beside it as `<model>.report.json`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from rise.config import Settings
from rise.contracts import write_json
from rise.errors import ConfigError
from rise.toy.models import policy_dir, report_file

log = logging.getLogger(__name__)

STAGES = ("clip", "sam2", "policy")


def pretrain_settings(settings: Settings) -> dict:
    """`presets.<preset>.pretrain`: the stages' settings."""
    if not settings.pretrain:
        raise ConfigError(f"{settings.source}: presets.{settings.preset}.pretrain is not set "
                          "(the toy pretraining stages need it)")
    return settings.pretrain


def pretrain(settings: Settings, stage: str) -> Path:
    """Runs one pretraining stage and its held-out report; returns the report file."""
    from rise.data.toy_world import readable_families

    p = pretrain_settings(settings)
    seed = p.get("seed", settings.seed)
    shade_words = bool(p.get("shade_words", False))
    families = readable_families(shade_words)
    models = settings.models
    if stage == "clip":
        from rise.toy.clip import clip_report, pretrain_clip

        out = models["clip"]["pretrained"]
        c = p["clip"]
        trained = pretrain_clip(out, steps=c["steps"], seed=seed, batch_size=c["batch_size"],
                                learning_rate=c["learning_rate"], shade_words=shade_words)
        report = clip_report(out, seed=seed, n_scenes=c.get("report_scenes", 200), families=families)
    elif stage == "sam2":
        from rise.toy.sam2 import pretrain_sam2, sam2_report

        sam = models["sam2"]
        out, s = sam["checkpoint"], p["sam2"]
        trained = pretrain_sam2(out, config=sam["config"], image_size=sam["image_size"], steps=s["steps"], seed=seed,
                                batch_size=s["batch_size"], learning_rate=s["learning_rate"])
        report = sam2_report(out, config=sam["config"], image_size=sam["image_size"], seed=seed,
                             n_images=s.get("report_images", 100))
    elif stage == "policy":
        from rise.toy.policy import (build_toy_policy, choice_report, fact_report, policy_report, pretrain_policy,
                                     pretrain_vision, sampled_format_report)

        out, s = policy_dir(settings), p["policy"]
        if s.get("shade_fact_share") and not shade_words:
            raise ConfigError(f"{settings.source}: presets.{settings.preset}.pretrain.policy.shade_fact_share is "
                              f"{s['shade_fact_share']} but pretrain.shade_words is off: set shade_words: true so "
                              "the tokenizer and CLIP know the words the facts teach")
        build_toy_policy(out, seed=seed, dims=s.get("dims"), shade_words=shade_words)
        # the settings are the functions' keywords: `vision_<name>` for the tower, the rest for the answers
        vision = pretrain_vision(out, seed=seed, **{k.removeprefix("vision_"): v for k, v in s.items()
                                                    if k.startswith("vision_")})
        trained = pretrain_policy(out, seed=seed, **{k: v for k, v in s.items() if not k.startswith("vision_")
                                                     and k not in ("dims", "report_images")})
        trained = {"vision_tower": vision, "answers": trained}
        n_images = s.get("report_images", 64)
        report = {"greedy": policy_report(out, families=families, seed=seed, n_images=n_images,
                                          grounded_names=tuple(s.get("grounded_names", ()))),
                  "sampled": choice_report(out, families=families, seed=seed, n_images=n_images,
                                           think=trained["answers"]["think"]),
                  "facts": fact_report(out, seed=seed, shade_words=shade_words,
                                       fact_form=trained["answers"]["fact_form"]),
                  "sampled_format": sampled_format_report(out, families=families, seed=seed,
                                                          n_images=min(16, n_images))}
    else:
        raise ConfigError(f"unknown toy pretraining stage '{stage}' (known: {STAGES})")
    result = report_file(out)
    from rise.fingerprints import weights_fingerprint

    write_json(result, {"stage": stage, "model": str(out), "fingerprint": weights_fingerprint(out),
                        "training": trained, "heldout": report})
    log.info("toy %s: %s %s -> %s", stage, trained, report, result)
    return result
