"""The policy's base pretraining for the toy world: the tiny Qwen2.5-VL taught by supervised
answers in the real format (think + JSON box and points) on the *base* instruction family only
("the red circle"), the analogue of Qwen2.5-VL's grounding pretraining. The families RISE trains
on (class names, colour, shape) are never shown to it; their words are in its tokenizer.

A curriculum makes it learn in minutes: scenes with one object first (where to look), then 2-4
objects (which one is meant).
"""
from __future__ import annotations

import itertools
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from rise.answer import parse_answer
from rise.data.synthetic import COLOURS, SHAPES
from rise.prompts import QWEN_GROUNDING, build_prompt, conversation
from rise.toy.world import (CELL, CLASS_NAMES, FAMILIES, GRID, SIZE, SIZE_WORDS, answer_text, instructions,
                            make_scene, render, scenes, split_seed)

log = logging.getLogger(__name__)

# The policy's size: about 4x the demo's text model and 2x its vision width (docs/toy.md).
POLICY_DIMS = {"text_hidden": 128, "text_layers": 4, "text_heads": 4, "vision_depth": 2, "vision_width": 64}


def toy_corpus() -> list[str]:
    """Text the toy tokenizer is trained on: every family's prompts and every cell's answer."""
    texts = []
    for (colour, shape), name in CLASS_NAMES.items():
        for instr in (f"the {colour} {shape}", f"the {name}", f"the {colour} shape", f"the {shape}",
                      *(f"the {z} {colour} {shape}" for z in SIZE_WORDS)):
            for cot, points in itertools.product((True, False), repeat=2):
                texts.append(build_prompt(instr, cot=cot, points=points))
            texts.append(QWEN_GROUNDING.format(q=instr) + ' [{"bbox_2d": [0, 28, 56, 84], "label": "' + instr + '"}]')
    rng = random.Random(0)
    for _ in range(400):  # every cell's answer, many times, so coordinates become single tokens
        obj = make_scene(rng, 1)[0]
        texts.append(answer_text(f"the {obj.colour} {obj.shape}", obj))
    return texts


def build_toy_policy(out_dir: str | Path, *, seed: int = 0, dims: dict | None = None) -> Path:
    """A Qwen2.5-VL with random weights at the toy size (tokenizer and processor as the demo's)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from rise.models import build_tiny_policy

    d = {**POLICY_DIMS, **(dims or {})}
    out = build_tiny_policy(out_dir, toy_corpus(), seed=seed, image_size=SIZE)
    config = Qwen2_5_VLConfig.from_pretrained(out)
    head_dim = d["text_hidden"] // d["text_heads"]
    sections = [head_dim // 8, 3 * head_dim // 16, head_dim // 2 - head_dim // 8 - 3 * head_dim // 16]
    config.text_config.hidden_size = d["text_hidden"]
    config.text_config.intermediate_size = 2 * d["text_hidden"]
    config.text_config.num_hidden_layers = d["text_layers"]
    config.text_config.num_attention_heads = d["text_heads"]
    config.text_config.num_key_value_heads = d["text_heads"] // 2
    config.text_config.layer_types = ["full_attention"] * d["text_layers"]
    config.text_config.rope_parameters = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": sections}
    config.vision_config.depth = d["vision_depth"]
    config.vision_config.hidden_size = d["vision_width"]
    config.vision_config.intermediate_size = 2 * d["vision_width"]
    config.vision_config.out_hidden_size = d["text_hidden"]
    config.vision_config.fullatt_block_indexes = [d["vision_depth"] - 1]
    config.hidden_size = d["text_hidden"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    log.info("toy policy: %.2fM parameters -> %s", sum(p.numel() for p in model.parameters()) / 1e6, out)
    return out


def pretrain_policy(policy_dir: str | Path, *, steps: int, one_object_steps: int, seed: int = 0,
                    batch_size: int = 16, learning_rate: float = 1e-3, family: str = "base") -> dict:
    """Supervised answers on one instruction family, on freshly drawn scenes; saves in place."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    rng = random.Random(split_seed(seed, "policy_pretrain"))
    noise = np.random.default_rng(split_seed(seed, "policy_pretrain"))
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    processor.tokenizer.padding_side = "right"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.05)
    end = processor.tokenizer.eos_token
    start = time.perf_counter()
    losses = []
    for step in range(steps):
        prompts, fulls, images = [], [], []
        while len(prompts) < batch_size:
            objects = make_scene(rng, 1 if step < one_object_steps else rng.randint(2, 4))
            options = instructions(objects, family)
            if not options:
                continue
            text, target = rng.choice(options)
            prompt = processor.apply_chat_template(conversation(text, cot=True, points=True),
                                                   add_generation_prompt=True, tokenize=False)
            prompts.append(prompt)
            fulls.append(prompt + answer_text(text, objects[target]) + end)
            images.append(render(objects, noise))
        batch = processor(text=fulls, images=images, padding=True, return_tensors="pt")
        prompt_lens = [len(ids) for ids in processor(text=prompts, images=images)["input_ids"]]
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, n in enumerate(prompt_lens):
            labels[row, :n] = -100  # learn the answer only
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("policy step %d: loss %.3f (%.0f s)", step, np.mean(losses[-50:]), time.perf_counter() - start)
    seconds = time.perf_counter() - start
    model.save_pretrained(policy_dir)
    return {"steps": steps, "one_object_steps": one_object_steps, "seconds": round(seconds, 1),
            "final_loss": round(float(np.mean(losses[-50:])), 4)}


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def policy_report(policy_dir: str | Path, *, families=FAMILIES, seed: int = 0, n_images: int = 64,
                  batch_size: int = 16) -> dict:
    """Held-out greedy answers per family (the prediction stage's own runner): parse rate, box IoU
    with the target's cell box (a right answer scores 1), and hit rate (that IoU >= 0.5)."""
    from rise.predict import PolicyRunner

    runner = PolicyRunner(str(policy_dir), "toy policy", size=SIZE, cot=True, points=True, max_new_tokens=64,
                          batch_size=batch_size, device="cpu")
    rows, images, targets = [], {}, []
    stream = scenes(seed, "policy_heldout")
    for k in range(n_images):
        objects, image = next(stream)
        images[str(k)] = image
        for family in families:
            for text, target in instructions(objects, family)[:1]:
                rows.append({"instruction": text, "image": str(k), "kind": family})
                targets.append(objects[target])
    texts = runner.generate(rows, images)
    report = {}
    for family in families:
        picked = [(t, o) for r, t, o in zip(rows, texts, targets) if r["kind"] == family]
        answers = [parse_answer(t, SIZE, SIZE) for t, _ in picked]
        ious = [box_iou(a.box, o.cell_box) if a.ok else 0.0 for a, (_, o) in zip(answers, picked)]
        report[family] = {"n": len(picked), "parse_rate": round(float(np.mean([a.ok for a in answers])), 4),
                          "cell_box_iou": round(float(np.mean(ious)), 4),
                          "hit_rate": round(float(np.mean([i >= 0.5 for i in ious])), 4)}
    report["example"] = texts[0] if texts else ""
    return report
