"""Demo only: teach the tiny random-weight policy the answer *format*, so the demo's rewards, SAM2
and metrics see parseable answers instead of noise. Its supervised pieces (`answer_batch`,
`optimiser_step`) also serve the toy world's pretraining (rise/toy/).

Targets hold random boxes and points (never any dataset's geometry), so what the policy can learn
about *where* objects are still comes only from the GRPO stage's rewards. The paper preset never
runs this: a real Qwen2.5-VL already follows the prompt.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from rise.data.synthetic import COLOURS, SHAPES
from rise.prompts import conversation, question_text

log = logging.getLogger(__name__)

STYLES = [  # (prompt style, cot, points)
    ("segzero", True, True), ("segzero", False, True), ("segzero", True, False), ("qwen_grounding", True, False),
]


def random_answer(rng: random.Random, instruction: str, size: int, style: str, cot: bool, points: bool) -> str:
    x1, y1 = rng.randint(0, size // 2), rng.randint(0, size // 2)
    x2, y2 = rng.randint(x1 + 8, size), rng.randint(y1 + 8, size)
    if style == "qwen_grounding":
        return f'[{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "{question_text(instruction)}"}}]'
    # strict JSON (double quotes), as the rewards and Seg-Zero's evaluation read it
    body = f'"bbox": [{x1},{y1},{x2},{y2}]'
    if points:
        px, py = (x1 + x2) // 2, (y1 + y2) // 2
        body += f', "points_1": [{px},{py}], "points_2": [{(x1 + px) // 2},{(y1 + py) // 2}]'
    answer = f"<answer>{{{body}}}</answer>"
    return (f"<think>{question_text(instruction)} is the target</think>" if cot else "") + answer


def answer_batch(processor, prompts: list[str], fulls: list[str], images: list):
    """A supervised batch of prompt + answer texts whose labels cover the answers only (prompt and
    padding masked with -100). Shared by the demo's format warm-up and the toy world's pretraining."""
    batch = processor(text=fulls, images=images, padding=True, return_tensors="pt")
    prompt_lens = [len(ids) for ids in processor(text=prompts, images=images)["input_ids"]]
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    for row, n in enumerate(prompt_lens):
        labels[row, :n] = -100  # learn the answer only
    return batch, labels


def warm_up_answer_format(policy_dir: str | Path, size: int, steps: int, seed: int = 0, batch_size: int = 8) -> None:
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    rng = random.Random(seed)
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    processor.tokenizer.padding_side = "right"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    instructions = [f"the {c} {s}" for c in COLOURS for s in SHAPES] + [f"the largest {c} shape" for c in COLOURS]
    end = processor.tokenizer.eos_token
    for step in tqdm(range(steps), desc="demo policy: answer-format warm-up", unit="step", mininterval=2):
        prompts, fulls, images = [], [], []
        for _ in range(batch_size):
            style, cot, points = rng.choice(STYLES)
            instr = rng.choice(instructions)
            prompt = processor.apply_chat_template(conversation(instr, cot=cot, points=points, style=style),
                                                   add_generation_prompt=True, tokenize=False)
            prompts.append(prompt)
            fulls.append(prompt + random_answer(rng, instr, size, style, cot, points) + end)
            images.append(Image.new("RGB", (size, size), tuple(rng.randint(0, 255) for _ in range(3))))
        batch, labels = answer_batch(processor, prompts, fulls, images)
        loss = model(**batch, labels=labels).loss
        optimiser_step(loss, optimizer)
        if step % 50 == 0 or step == steps - 1:
            log.info("warm-up step %d: loss %.3f", step, loss.item())
    model.save_pretrained(policy_dir)


def optimiser_step(loss, optimizer, parameters=None, *, max_grad_norm: float | None = None, schedule=None) -> None:
    """One supervised update: the gradients of `loss` (clipped to `max_grad_norm` over `parameters`
    where given), then the optimiser's step and the learning-rate schedule's."""
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    if schedule is not None:
        schedule.step()
