"""The `build-models` stage: builds the demo's offline models, or checks the paper's are available.

Writes runs/<preset>/models/models.json naming what every later stage loads.
"""
from __future__ import annotations

import itertools
import logging

from rise.config import Settings
from rise.contracts import write_json
from rise.data.synthetic import COLOURS, SHAPES
from rise.errors import ConfigError, MissingResourceError
from rise.prompts import EXAMPLE_BOX_ONLY, EXAMPLE_WITH_POINTS, QWEN_GROUNDING, build_prompt

log = logging.getLogger(__name__)


def tokenizer_corpus() -> list[str]:
    """Text the demo tokenizer is trained on: prompts, instructions and answers of the demo."""
    texts = []
    for colour, shape in itertools.product(COLOURS, SHAPES):
        for instr in (f"the {colour} {shape}", f"the shape left of the {colour} {shape}",
                      f"the largest {colour} shape", f"the smallest {colour} shape", shape):
            for cot, points in itertools.product((True, False), repeat=2):
                texts.append(build_prompt(instr, cot=cot, points=points))
            texts.append(f"<think> the {colour} {shape} is on the left </think><answer>{EXAMPLE_WITH_POINTS}</answer>")
            texts.append(QWEN_GROUNDING.format(q=instr) + ' [{"bbox_2d": [1, 2, 3, 4], "label": "' + instr + '"}]')
    texts += [f"{{'bbox': [{i},{i + 7},{i * 3},{i + 40}], 'points_1': [{i},{i + 1}]}}" for i in range(120)]
    texts.append(EXAMPLE_BOX_ONLY)
    return texts


def model_problems(settings: Settings, *, policies=None, clip: bool = True, sam2: bool = True) -> list[str]:
    """Every model the preset names and this machine lacks, one sentence each naming its setting.
    `policies` (sizes, e.g. {"3b"}), `clip` and `sam2` narrow the check to what a run needs."""
    from pathlib import Path

    from rise.models import check_hub_or_path, load_clip

    prefix = f"presets.{settings.preset}.models"
    first_key = {}  # the demo maps 3b and 7b to one folder: check each model once
    for key, ref in settings.models["policies"].items():
        if policies is None or key in policies:
            first_key.setdefault(ref, key)
    checks = [lambda ref=ref, key=key: check_hub_or_path(ref, f"{prefix}.policies.{key}")
              for ref, key in first_key.items()]
    clip_cfg = settings.models["clip"]

    def check_clip():
        if Path(clip_cfg["pretrained"]).suffix or "/" in clip_cfg["pretrained"]:
            if not Path(clip_cfg["pretrained"]).exists():
                raise MissingResourceError(f"{prefix}.clip.pretrained: '{clip_cfg['pretrained']}' does not exist")
        else:
            load_clip(clip_cfg["model"], clip_cfg["pretrained"], f"{prefix}.clip")

    def check_sam2():
        ckpt = settings.models["sam2"]["checkpoint"]
        if Path(ckpt).exists():
            return
        if ckpt.count("/") == 1 and not ckpt.endswith(".pt"):
            check_hub_or_path(ckpt, f"{prefix}.sam2.checkpoint", filename="config.yaml")
        else:
            raise MissingResourceError(f"{prefix}.sam2.checkpoint: '{ckpt}' does not exist (download "
                                       f"{Path(ckpt).name} from the SAM2 release into {Path(ckpt).parent}/, "
                                       "or point the setting at a copy; README \"Reproducing the paper\")")

    problems = []
    for check in [*checks, *([check_clip] if clip else []), *([check_sam2] if sam2 else [])]:
        try:
            check()
        except MissingResourceError as exc:
            problems.append(str(exc))
    return problems


def build_models(settings: Settings) -> None:
    out_dir = settings.layout.models_dir()
    if settings.build_demo_models:
        from rise.models import build_tiny_clip, build_tiny_policy, build_tiny_sam2
        from rise.warmup import warm_up_answer_format

        built = set()
        for ref in settings.models["policies"].values():
            if ref not in built:
                build_tiny_policy(ref, tokenizer_corpus(), seed=settings.seed, image_size=settings.image["policy_size"])
                if settings.warm_up_steps:
                    warm_up_answer_format(ref, settings.image["policy_size"], settings.warm_up_steps, seed=settings.seed)
                built.add(ref)
        build_tiny_clip(settings.models["clip"]["pretrained"], seed=settings.seed)
        sam = settings.models["sam2"]
        build_tiny_sam2(sam["checkpoint"], sam["config"], sam.get("image_size", 1024), seed=settings.seed)
        log.info("built the demo models under %s", out_dir)
    problems = model_problems(settings)
    if problems:
        raise MissingResourceError("; ".join(problems))
    if settings.pretrain:  # the toy world: the base GRPO starts from is the one the recipe declares
        from rise.toy.models import base_check_problems

        problems = base_check_problems(settings)
        if problems:
            raise ConfigError("; ".join(problems))
    from rise.fingerprints import model_fingerprints

    write_json(settings.layout.models_manifest(), {"built_offline": settings.build_demo_models,
                                                   "format_warm_up_steps": settings.warm_up_steps,
                                                   "fingerprints": model_fingerprints(settings),
                                                   **settings.provenance()})
