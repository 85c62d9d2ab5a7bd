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
from rise.data.toy_world import (CELL, CLASS_NAMES, FACT_FORMS, GRID, NONCE_WORDS, SHADES, SIZE, SIZE_WORDS,
                            THINK_STYLES, answer_text, fact, fact_text, instructions, make_scene,
                            readable_families, render, scenes, shade_fact, shade_fact_text, split_seed, think_text)
from rise.warmup import answer_batch, optimiser_step

log = logging.getLogger(__name__)

# The policy's size: about 4x the demo's text model and 2x its vision width (docs/toy-log.md).
POLICY_DIMS = {"text_hidden": 128, "text_layers": 4, "text_heads": 4, "vision_depth": 2, "vision_width": 64}


def toy_corpus(shade_words: bool = False) -> list[str]:
    """Text the toy tokenizer is trained on: every family's prompts and every cell's answer; the
    shade words (world.SHADES) only with `shade_words`, so a tokenizer without them is the one it was."""
    texts = []
    for (colour, shape), name in CLASS_NAMES.items():
        for instr in (f"the {colour} {shape}", f"the {name}", f"the {colour} shape", f"the {shape}",
                      *(f"the {z} {colour} {shape}" for z in SIZE_WORDS)):
            for cot, points in itertools.product((True, False), repeat=2):
                texts.append(build_prompt(instr, cot=cot, points=points))
            texts.append(QWEN_GROUNDING.format(q=instr) + ' [{"bbox_2d": [0, 28, 56, 84], "label": "' + instr + '"}]')
    for word in NONCE_WORDS:  # whole tokens of their own, sharing no piece with a family's words
        for cot, points in itertools.product((True, False), repeat=2):
            texts.append(build_prompt(f"the {word}", cot=cot, points=points))
    for colour, words in SHADES.items() if shade_words else ():
        for word in words:
            for cot, points in itertools.product((True, False), repeat=2):
                texts.append(build_prompt(f"the {word} shape", cot=cot, points=points))
            texts.extend(shade_fact_text(word))
    rng = random.Random(0)
    for _ in range(400):  # every cell's answer, many times, so coordinates become single tokens
        obj = make_scene(rng, 1)[0]
        for think in THINK_STYLES:
            texts.append(answer_text(f"the {obj.colour} {obj.shape}", obj, think=think))
    return texts


def build_toy_policy(out_dir: str | Path, *, seed: int = 0, dims: dict | None = None,
                     shade_words: bool = False) -> Path:
    """A Qwen2.5-VL with random weights at the toy size (tokenizer and processor as the demo's)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from rise.models import build_tiny_policy

    d = {**POLICY_DIMS, **(dims or {})}
    out = build_tiny_policy(out_dir, toy_corpus(shade_words), seed=seed, image_size=SIZE)
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


def token_targets(objects, floor_position: bool = True) -> dict[str, torch.Tensor]:
    """Per merged visual token (row-major): colour and shape (the last class: floor) and row and
    column (for a floor token its own place, or with `floor_position` false the class GRID: none)."""
    n = GRID * GRID
    place = torch.arange(n)
    targets = {"colour": torch.full((n,), len(COLOURS)), "shape": torch.full((n,), len(SHAPES)),
               "row": place // GRID if floor_position else torch.full((n,), GRID),
               "col": place % GRID if floor_position else torch.full((n,), GRID)}
    for o in objects:
        k = o.row * GRID + o.col
        targets["colour"][k], targets["shape"][k] = list(COLOURS).index(o.colour), SHAPES.index(o.shape)
        targets["row"][k], targets["col"][k] = o.row, o.col
    return targets


COSINE_SCALE = 10.0


def head_logits(head: torch.nn.Linear, tokens: torch.Tensor, cosine: bool) -> torch.Tensor:
    """A probe's logits; `cosine`: against unit-norm class directions (tokens come normalised), so
    a class is told apart only by a token direction of its own, as attention will need it."""
    if not cosine:
        return head(tokens)
    return tokens @ torch.nn.functional.normalize(head.weight, dim=-1).T


def pretrain_vision(policy_dir: str | Path, *, steps: int, seed: int = 0, batch_size: int = 32,
                    learning_rate: float = 3e-3, floor_position: bool = True, cosine_heads: bool = False) -> dict:
    """The vision tower alone, per visual token: what is in this cell (colour, shape or floor) and
    where it is (row, column); the analogue of Qwen2.5-VL's separately pretrained ViT. Without it
    a from-scratch tower's tokens barely differ (docs/toy-log.md) and the language model never learns
    to look at the right one. Linear heads are dropped afterwards; the tower is saved in place.

    With `floor_position: false` only an object's token is taught its row and column (a floor
    token's target is "no object"): the average of all image tokens then carries where the
    objects are, so the answer's row and column can be learnt before attention has learnt to pick
    a token (docs/toy-log.md: with every token placed, that average is the same for every image)."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    rng = random.Random(split_seed(seed, "vision_pretrain"))
    noise = np.random.default_rng(split_seed(seed, "vision_pretrain"))
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir)
    visual = model.model.visual
    width = model.config.vision_config.out_hidden_size
    places = GRID if floor_position else GRID + 1  # the extra class: a floor token, no object here
    heads = torch.nn.ModuleDict({"row": torch.nn.Linear(width, places), "col": torch.nn.Linear(width, places),
                                 "colour": torch.nn.Linear(width, len(COLOURS) + 1),
                                 "shape": torch.nn.Linear(width, len(SHAPES) + 1)})
    params = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    start = time.perf_counter()
    for step in range(steps):
        images, per_image = [], []
        for _ in range(batch_size):
            objects = make_scene(rng, rng.randint(1, 4))
            images.append(render(objects, noise))
            per_image.append(token_targets(objects, floor_position))
        batch = processor.image_processor(images=images, return_tensors="pt")
        out = visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
        tokens = out.pooler_output.view(batch_size, GRID * GRID, width)  # row-major merged tokens
        targets = {k: torch.cat([t[k] for t in per_image]) for k in heads}
        flat = tokens.reshape(-1, width)
        if cosine_heads:  # what the language model's RMSNorm sees: only directions count, not the scale
            flat = COSINE_SCALE * torch.nn.functional.normalize(flat, dim=-1)
        losses = {k: torch.nn.functional.cross_entropy(head_logits(heads[k], flat, cosine_heads), targets[k])
                  for k in heads}
        loss = sum(losses.values())
        optimiser_step(loss, optimizer, params, max_grad_norm=1.0, schedule=schedule)
        if step % 25 == 0 or step == steps - 1:
            with torch.no_grad():
                acc = {k: (head_logits(heads[k], flat, cosine_heads).argmax(-1) == targets[k]).float().mean().item()
                       for k in heads}
            log.info("vision step %d: loss %.3f, token accuracy %s (%.0f s)", step, loss.item(),
                     {k: round(v, 2) for k, v in acc.items()}, time.perf_counter() - start)
    model.save_pretrained(policy_dir)
    return {"steps": steps, "seconds": round(time.perf_counter() - start, 1),
            "token_accuracy": {k: round(v, 4) for k, v in acc.items()}}


def answer_loss(logits: torch.Tensor, labels: torch.Tensor,
                token_weights: tuple[tuple[torch.Tensor, float], ...] = ()) -> torch.Tensor:
    """Next-token cross-entropy over the labelled tokens (-100: not taught), each token whose id is in
    one of `token_weights`' id sets weighted by that set's weight (the sets do not overlap); with no
    sets, or weights of 1, the model's own loss."""
    next_labels = labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), next_labels.flatten(),
                                                   ignore_index=-100, reduction="none")
    weight = torch.ones_like(next_labels, dtype=torch.float)
    for ids, w in token_weights:
        weight = weight + (w - 1) * torch.isin(next_labels, ids).float()
    weight = weight * (next_labels != -100).float()
    return (token_loss * weight.flatten()).sum() / weight.sum()


def attention_loss(attention: torch.Tensor, input_ids: torch.Tensor, next_labels: torch.Tensor,
                   decision_ids: torch.Tensor, image_token_id: int, cells: list[int]) -> torch.Tensor:
    """-log of the attention one head pays, from each position that writes a decision (a row or
    column number), to the image token of the target's cell. attention: (batch, query, key) of that
    head; cells: per sample, the target's cell (row-major, the order of the image's tokens)."""
    terms = []
    for b, cell in enumerate(cells):
        if cell is None:  # an example without a decision
            continue
        target = torch.nonzero(input_ids[b] == image_token_id)[cell, 0]
        for k in torch.nonzero(torch.isin(next_labels[b], decision_ids))[:, 0]:
            terms.append(-torch.log(attention[b, k, target] + 1e-6))
    return torch.stack(terms).mean() if terms else attention.sum() * 0.0


def previous_token_loss(attention: torch.Tensor, next_labels: torch.Tensor) -> torch.Tensor:
    """-log of the attention one head pays, from each answer position, to the token just before it.
    attention: (batch, query, key) of that head; next_labels: the labels shifted (-100: not taught)."""
    b, k = torch.nonzero(next_labels != -100, as_tuple=True)
    keep = k > 0
    b, k = b[keep], k[keep]
    return -torch.log(attention[b, k, k - 1] + 1e-6).mean() if len(k) else attention.sum() * 0.0


def box_number_ids(tokenizer) -> torch.Tensor:
    """The ids of the numbers a toy box is written with (the cell edges), each one token in the JSON."""
    ids = []
    for edge in range(0, SIZE + 1, CELL):
        tokens = tokenizer.tokenize(str(edge))
        if len(tokens) != 1:
            raise ValueError(f"the toy tokenizer writes the box edge {edge} as {tokens}, not one token")
        ids.append(tokenizer.convert_tokens_to_ids(tokens[0]))
    return torch.tensor(ids)


def pretrain_policy(policy_dir: str | Path, *, steps: int, one_object_steps: int, two_object_steps: int = 0,
                    short_prompt_steps: int = 0, schedule_steps: int | None = None,
                    segzero_share: float = 0.0, nonce_share: float = 0.0, nonce_from_step: int = 0,
                    fact_share: float = 0.0, fact_from_step: int = 0, fact_form: str = "sentence",
                    shade_fact_share: float = 0.0, grounded_names: tuple[str, ...] = (),
                    grounded_share: float = 0.0, seed: int = 0, batch_size: int = 16,
                    learning_rate: float = 1e-3, family: str = "base", think: str = "echo",
                    decision_weight: float = 1.0, attention_weight: float = 0.0, attention_layer: int = 1,
                    previous_token_weight: float = 0.0, attribute_weight: float = 1.0,
                    box_weight: float = 1.0) -> dict:
    """Supervised answers on one instruction family, on freshly drawn scenes; saves in place.

    The first `short_prompt_steps` ask with Qwen2.5-VL's short grounding prompt (about 15 text
    tokens instead of Seg-Zero's 160): the same answer is learnt 3-4x faster per step, and the
    image tokens are a larger share of what attention sees; after the one-object steps,
    `segzero_share` of their examples ask with Seg-Zero's prompt already, and every later step does.

    The learning rate is a one-cycle over `schedule_steps` (default: `steps`); a run with fewer
    `steps` stops part-way down it, with the same rates, data and weights as the longer run up to
    its last step, so steps after the prompt switch can be cut without changing what came before.

    `nonce_share` of the examples with several objects name a made-up word (NONCE_WORDS) whose
    answer is a random object of the scene: the policy learns that a word it cannot read leaves
    every object equally likely, so on the words RISE trains on its samples spread over the objects
    instead of repeating one guess (what GRPO needs to compare answers; docs/toy-log.md). They start at
    step `nonce_from_step`: from the start they delay the step where the policy learns to look at the
    named object (docs/toy-log.md, "Sixth round"). The scenes drawn before that step are the same as
    without made-up words.

    `fact_share` of the examples, from step `fact_from_step` on, ask what a class-like name looks
    like and teach the answer in words (world.fact: "the tomato is a red circle"), with a scene that
    plays no part: the policy knows the names as a language model knows objects, but is never shown
    one grounded, so using that knowledge in the think block is left to RISE (docs/toy-log.md, "Seventh
    round"). Like the made-up words, they leave the scenes drawn before their first step as they
    were without them. `fact_form` is how the answer is worded (world.FACT_FORMS: a sentence, or an
    entry in the think block's own words, "the tomato: red circle"). `shade_fact_share` of the
    examples, from the same step, teach a shade word's colour the same way (world.shade_fact:
    "crimson is red"): the `shade` family's words, known in words only (docs/toy-log.md, "Fourteenth
    round").

    `grounded_share` of the other examples name an object by its class name, if the scene has one
    of `grounded_names` to name, with the grounded answer: the base reads those names by construction
    and the rest at most through the facts (docs/toy.md, "A base half-way by construction").

    Steps from `one_object_steps` to `two_object_steps` show two objects, later ones 2-4. `think`
    is the think block's style (world.THINK_STYLES). `decision_weight` weighs the cross-entropy of
    the row and column numbers against the other answer tokens: unweighted, the format's ~50 tokens
    are learnt first and the answer's one decision stays at chance much longer (docs/toy-log.md).
    `attribute_weight` weighs the colour and shape words the same way (in the think block and in the
    facts' answers alike): at 1 the policy learnt to copy the colour of "the red circle" into its
    think block but wrote the shape at chance, and picked the object by its colour alone (docs/toy-log.md,
    "Ninth round").
    `box_weight` weighs the box's four numbers (the cell edges 0, 28, ..., 112) the same way: at 1 the
    policy sampled at T = 1 a box whose right edge repeats its left (`[56,84,56,112]`) for 43% of the
    targets in the third column, a share of broken answers that every format reward then trains on
    (docs/toy-log.md, "Eleventh round").
    `attention_weight` adds that much of `attention_loss` for head 0 of layer `attention_layer`:
    with a cosine-probed tower (pretrain_vision) it is what made the policy pick the named object
    (docs/toy-log.md, "Third round"). `previous_token_weight` adds that much of `previous_token_loss` for
    head 0 of layer 0, the half of that circuit that otherwise forms at a step CPUs move (docs/toy-log.md,
    "Eighth round"). The reported accuracy is that of the row and column numbers,
    teacher-forced."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    rng = random.Random(split_seed(seed, "policy_pretrain"))
    noise = np.random.default_rng(split_seed(seed, "policy_pretrain"))
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    processor.tokenizer.padding_side = "right"
    # attention supervision reads the attention weights, which only the eager implementation returns
    reads_attention = bool(attention_weight or previous_token_weight)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        policy_dir, **({"attn_implementation": "eager"} if reads_attention else {}))
    layers = model.config.text_config.num_hidden_layers
    if attention_weight and not 0 <= attention_layer < layers:
        raise ValueError(f"pretrain.policy.attention_layer: {attention_layer} is not a layer of the policy "
                         f"(it has {layers} text layers, 0-{layers - 1})")
    if fact_form not in FACT_FORMS:
        raise ValueError(f"pretrain.policy.fact_form: '{fact_form}' is not one of {FACT_FORMS}")
    unknown = sorted(set(grounded_names) - set(CLASS_NAMES.values()))
    if unknown:
        raise ValueError(f"pretrain.policy.grounded_names: {unknown} are not class names of the toy world "
                         f"(known: {sorted(CLASS_NAMES.values())})")
    schedule_steps = steps if schedule_steps is None else schedule_steps
    if schedule_steps < steps:
        raise ValueError(f"pretrain.policy.schedule_steps: {schedule_steps} is fewer than its steps ({steps}); "
                         "the learning-rate schedule must span every step")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=schedule_steps,
                                                   pct_start=0.05)
    end = processor.tokenizer.eos_token
    # the think block's row and column numbers (" 1".." 4") are the answer's one real decision
    def first_ids(words):
        return torch.tensor([processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.tokenize(f" {w}"))[0]
                             for w in words])
    cell_ids = first_ids(range(1, GRID + 1))
    attribute_ids = first_ids([*COLOURS, *SHAPES])
    box_ids = box_number_ids(processor.tokenizer)
    token_weights = ((cell_ids, decision_weight), (attribute_ids, attribute_weight), (box_ids, box_weight))
    start = time.perf_counter()
    losses, cell_accuracy, row_accuracy = [], [], []
    for step in range(steps):
        prompts, fulls, images, cells = [], [], [], []
        while len(prompts) < batch_size:
            objects = make_scene(rng, 1 if step < one_object_steps else 2 if step < two_object_steps
                                 else rng.randint(2, 4))
            # drawn only where facts are taught, so the steps before keep the stream they had without them
            facts_now = step >= fact_from_step
            shade_now = bool(shade_fact_share and facts_now and rng.random() < shade_fact_share)
            if shade_now or (fact_share and facts_now and rng.random() < fact_share):
                question, answer = shade_fact(rng) if shade_now else fact(rng, fact_form)
                prompt = fact_prompt(processor, question)
                prompts.append(prompt)
                fulls.append(prompt + answer + end)
                images.append(render(objects, noise))
                cells.append(None)  # no row or column to look for
                continue
            # the draw is made at every step, so the stream before `nonce_from_step` is the same as without
            if len(objects) > 1 and rng.random() < (nonce_share if step >= nonce_from_step else 0.0):
                text, target = f"the {rng.choice(NONCE_WORDS)}", rng.randrange(len(objects))
            else:
                # drawn only where names are taught grounded, so the stream stays as it was without them
                grounded_now = bool(grounded_share) and rng.random() < grounded_share
                options = [(text, i) for text, i in instructions(objects, "classname")
                           if objects[i].name in grounded_names] if grounded_now else []
                options = options or instructions(objects, family)
                if not options:
                    continue
                text, target = rng.choice(options)
            short = step < one_object_steps or (step < short_prompt_steps and rng.random() >= segzero_share)
            style = "qwen_grounding" if short else "segzero"
            prompt = processor.apply_chat_template(conversation(text, cot=True, points=True, style=style),
                                                   add_generation_prompt=True, tokenize=False)
            prompts.append(prompt)
            fulls.append(prompt + answer_text(text, objects[target], think=think) + end)
            images.append(render(objects, noise))
            cells.append(objects[target].row * GRID + objects[target].col)
        batch, labels = answer_batch(processor, prompts, fulls, images)
        out = model(**batch, output_attentions=reads_attention)
        loss = answer_loss(out.logits, labels, token_weights)
        next_labels = labels[:, 1:]
        if attention_weight:
            loss = loss + attention_weight * attention_loss(out.attentions[attention_layer][:, 0], batch["input_ids"],
                                                            next_labels, cell_ids, model.config.image_token_id, cells)
        if previous_token_weight:
            loss = loss + previous_token_weight * previous_token_loss(out.attentions[0][:, 0], next_labels)
        with torch.no_grad():
            is_cell = torch.isin(next_labels, cell_ids)
            right = out.logits[:, :-1].argmax(-1) == next_labels
            cell_accuracy.append(right[is_cell].float().mean().item())
            # the row alone: the first number of each answer, where picking the object is decided
            first = is_cell & (is_cell.cumsum(1) == 1)
            row_accuracy.append(right[first].float().mean().item())
        optimiser_step(loss, optimizer, model.parameters(), max_grad_norm=1.0, schedule=schedule)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("policy step %d: loss %.3f, row/column token accuracy %.2f, row %.2f (%.0f s)", step,
                     np.mean(losses[-50:]), np.mean(cell_accuracy[-50:]), np.mean(row_accuracy[-50:]),
                     time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if reads_attention:
        model.set_attn_implementation("sdpa")  # what every later stage loads it with
    model.save_pretrained(policy_dir)
    return {"steps": steps, "one_object_steps": one_object_steps, "two_object_steps": two_object_steps,
            "short_prompt_steps": short_prompt_steps, "schedule_steps": schedule_steps, "think": think,
            "decision_weight": decision_weight, "attribute_weight": attribute_weight, "box_weight": box_weight,
            "previous_token_weight": previous_token_weight,
            "segzero_share": segzero_share, "nonce_share": nonce_share, "nonce_from_step": nonce_from_step,
            "fact_share": fact_share, "fact_from_step": fact_from_step, "fact_form": fact_form,
            "grounded_names": list(grounded_names), "grounded_share": grounded_share,
            "shade_fact_share": shade_fact_share, "seconds": round(seconds, 1),
            "final_loss": round(float(np.mean(losses[-50:])), 4),
            "final_cell_token_accuracy": round(float(np.mean(cell_accuracy[-50:])), 4),
            "final_row_token_accuracy": round(float(np.mean(row_accuracy[-50:])), 4)}


def teach_two_answers(policy_dir: str | Path, samples: list[tuple], *, steps: int, learning_rate: float = 3e-3,
                      think: str = "compact", seed: int = 0) -> dict:
    """The smallest base that half-knows: supervised answers, under Seg-Zero's prompt, for each
    sample's target and for one other object of its scene (the next in its list), each as often, in
    one full batch a step; saves in place. The policy learns to write either answer whole with
    probability about one half; which object is meant is left to GRPO, as on the toy preset's base.
    It memorises by instruction (it is not taught to read the image), so give each instruction once.
    samples: (instruction, image, objects, target index). Used by the reduced claim
    (tests/test_toy_claim.py)."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(policy_dir)
    processor.tokenizer.padding_side = "right"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    prompts, fulls, images = [], [], []
    for text, image, objects, target in samples:
        prompt = processor.apply_chat_template(conversation(text, cot=True, points=True, style="segzero"),
                                               add_generation_prompt=True, tokenize=False)
        for j in (target, (target + 1) % len(objects)):
            prompts.append(prompt)
            fulls.append(prompt + answer_text(text, objects[j], think=think) + processor.tokenizer.eos_token)
            images.append(image)
    batch, labels = answer_batch(processor, prompts, fulls, images)
    start = time.perf_counter()
    for step in range(steps):
        loss = answer_loss(model(**batch).logits, labels)
        optimiser_step(loss, optimizer, model.parameters(), max_grad_norm=1.0, schedule=schedule)
        if step % 100 == 0 or step == steps - 1:
            log.info("two answers step %d: loss %.4f", step, loss.item())
    model.save_pretrained(policy_dir)
    return {"steps": steps, "final_loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - start, 1)}


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def think_attributes(text: str) -> tuple[str | None, str | None]:
    """The last colour word and the last shape word of an answer's think block (None where it has
    none): the object the think block settles on, whatever it echoed before."""
    think = text.split("</think>")[0]
    words = [w.strip(".,:;'\"") for w in think.split()]
    colour = next((w for w in reversed(words) if w in COLOURS), None)
    shape = next((w for w in reversed(words) if w in SHAPES), None)
    return colour, shape


def heldout_prompts(seed: int, n_images: int, families) -> list[tuple]:
    """The held-out prompts every report reads: on each of `n_images` held-out scenes, the first
    instruction of each family the scene allows, as (family, instruction, image, objects, target index)."""
    out = []
    stream = scenes(seed, "policy_heldout")
    for _ in range(n_images):
        objects, image = next(stream)
        for family in families:
            for text, target in instructions(objects, family)[:1]:
                out.append((family, text, image, objects, target))
    return out


def policy_report(policy_dir: str | Path, *, families=readable_families(False),
                  seed: int = 0, n_images: int = 64,
                  batch_size: int = 16, grounded_names=()) -> dict:
    """Held-out greedy answers per family (the prediction stage's own runner): parse rate, box IoU
    with the target's cell box (a right answer scores 1), hit rate (that IoU >= 0.5), and how often
    the think block settles on the target's colour and its shape (`think_attributes`). With
    `grounded_names`, the class names also apart: "classname (grounded)" and "classname (words only)"."""
    from rise.predict import PolicyRunner

    runner = PolicyRunner(str(policy_dir), "toy policy", size=SIZE, cot=True, points=True, max_new_tokens=64,
                          batch_size=batch_size, device="cpu")
    rows, images, targets, keys = [], {}, [], {}
    for family, text, image, objects, target in heldout_prompts(seed, n_images, families):
        key = keys.setdefault(id(image), str(len(keys)))  # one key per scene, in the scenes' order
        images[key] = image
        rows.append({"instruction": text, "image": key, "kind": family})
        targets.append(objects[target])
    texts = runner.generate(rows, images)
    report = {}
    groups = {family: (family, None) for family in families}
    if grounded_names and "classname" in families:
        groups.update({"classname (grounded)": ("classname", True), "classname (words only)": ("classname", False)})
    for name, (family, grounded) in groups.items():
        picked = [(t, o) for r, t, o in zip(rows, texts, targets) if r["kind"] == family
                  and (grounded is None or (o.name in grounded_names) == grounded)]
        if not picked:
            continue
        answers = [parse_answer(t, SIZE, SIZE) for t, _ in picked]
        ious = [box_iou(a.box, o.cell_box) if a.ok else 0.0 for a, (_, o) in zip(answers, picked)]
        written = [think_attributes(t) for t, _ in picked]
        report[name] = {"n": len(picked), "parse_rate": round(float(np.mean([a.ok for a in answers])), 4),
                          "cell_box_iou": round(float(np.mean(ious)), 4),
                          "hit_rate": round(float(np.mean([i >= 0.5 for i in ious])), 4),
                          "think_colour": round(float(np.mean([w[0] == o.colour for w, (_, o) in zip(written, picked)])), 4),
                          "think_shape": round(float(np.mean([w[1] == o.shape for w, (_, o) in zip(written, picked)])), 4)}
    report["example"] = texts[0] if texts else ""
    return report


def answer_format(text: str) -> str:
    """What the training rewards make of one answer's format: `valid` (a box and two points: R_seg 1,
    R_sem scored), `box_only` (the box parses, the points do not: R_sem scored in full, R_seg 0; the
    shorter answer that R_sem alone prefers, docs/toy-log.md "Tenth round"), `no_box` (R_sem 0). Read
    as the rewards read it: strict JSON, in the image the policy saw."""
    if parse_answer(text, SIZE, SIZE, points=True, single_quotes=False).ok:
        return "valid"
    return "box_only" if parse_answer(text, SIZE, SIZE, points=False, single_quotes=False).ok else "no_box"


@torch.no_grad()
def sampled_format_report(policy_dir: str | Path, *, families=readable_families(False),
                          seed: int = 0, n_images: int = 16,
                          group: int = 8, temperature: float = 1.0, max_new_tokens: int = 64) -> dict:
    """Per family, on held-out scenes: the shares of `answer_format` among `group` answers sampled at
    `temperature` per prompt, as GRPO samples them under Seg-Zero's prompt. A base with a large
    `no_box` share and any `box_only` one gives R_sem alone a reason to drop the points."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(policy_dir)
    processor.tokenizer.padding_side = "left"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir).eval()
    torch.manual_seed(seed)
    prompts = heldout_prompts(seed, n_images, families)
    kinds: dict[str, list[str]] = {family: [] for family in families}
    for start in range(0, len(prompts), 8):
        chunk = prompts[start:start + 8]
        texts = [processor.apply_chat_template(conversation(t), add_generation_prompt=True, tokenize=False)
                 for _, t, *_ in chunk]
        batch = processor(text=texts, images=[p[2] for p in chunk], padding=True, return_tensors="pt")
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                             top_k=0, top_p=1.0, num_return_sequences=group)
        answers = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for k, (family, *_) in enumerate(chunk):
            kinds[family] += [answer_format(a) for a in answers[k * group:(k + 1) * group]]
    return {family: {"n": len(found), **{kind: round(found.count(kind) / len(found), 4) if found else 0.0
                                         for kind in ("valid", "box_only", "no_box")}}
            for family, found in kinds.items()}


def fact_prompt(processor, question: str) -> str:
    """A question about a name in words, asked beside an image (the chat template, no grounding prompt)."""
    return processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True, tokenize=False)


@torch.no_grad()
def fact_report(policy_dir: str | Path, *, seed: int = 0, shade_words: bool = False,
                fact_form: str = "sentence") -> dict:
    """Whether the policy knows each class-like name in words: its greedy answer to world.fact's
    question ("What is the tomato?") against the fact in `fact_form` ("the tomato is a red circle"), asked with a
    held-out scene. Known names (every one, after `fact_share` pretraining) are what RISE can draw on;
    `shades_known` the same for the shade words (world.shade_fact: "crimson is red")."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(policy_dir)
    processor.tokenizer.padding_side = "left"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir).eval()
    stream = scenes(seed, "policy_facts")

    def ask(facts):
        questions = [fact_prompt(processor, q) for q, _ in facts]
        images = [next(stream)[1] for _ in facts]
        batch = processor(text=questions, images=images, padding=True, return_tensors="pt")
        out = model.generate(**batch, max_new_tokens=16, do_sample=False)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        said = [t.strip() for t in processor.batch_decode(new_tokens, skip_special_tokens=True)]
        return said, [s == a for s, (_, a) in zip(said, facts)]

    said, right = ask([fact_text(name, fact_form) for _, name in sorted(CLASS_NAMES.items())])
    report = {"n": len(right), "known": round(float(np.mean(right)), 4), "example": said[0]}
    if shade_words:
        shade_said, shade_right = ask([shade_fact_text(w) for words in SHADES.values() for w in words])
        report.update(shades_known=round(float(np.mean(shade_right)), 4), shade_example=shade_said[0])
    return report


@torch.no_grad()
def choice_distribution(model, processor, samples: list[tuple], *, batch_size: int = 16,
                        temperature: float = 1.0, think: str = "echo", style: str = "segzero") -> list[dict]:
    """The policy's exact probability (at `temperature`) of writing, after "<think>{instruction}",
    each object's own think block up to its column (for `referent`: its colour, shape, row and
    column), teacher-forced. samples: (instruction, image, objects, target index). Returns per
    sample the probability of the target's and of any object's think."""
    tok = processor.tokenizer
    tok.padding_side = "right"
    queries = []  # (sample index, object index, prefix, prefix + the object's think)
    for i, (text, _, objects, _) in enumerate(samples):
        prompt = processor.apply_chat_template(conversation(text, cot=True, points=True, style=style),
                                               add_generation_prompt=True, tokenize=False)
        for j, o in enumerate(objects):
            queries.append((i, j, prompt + f"<think>{text}", prompt + f"<think>{think_text(text, o, think)}"))
    logp = {}
    for start in range(0, len(queries), batch_size):
        chunk = queries[start:start + batch_size]
        images = [samples[q[0]][1] for q in chunk]
        batch = processor(text=[q[3] for q in chunk], images=images, padding=True, return_tensors="pt")
        prefix_lens = [len(ids) for ids in processor(text=[q[2] for q in chunk], images=images)["input_ids"]]
        logits = model(**batch).logits[:, :-1] / temperature
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
        for row, (i, j, _, _) in enumerate(chunk):
            end = int(batch["attention_mask"][row].sum())
            logp[(i, j)] = float(token_logp[row, prefix_lens[row] - 1:end - 1].sum())
    out = []
    for i, (_, _, objects, target) in enumerate(samples):
        per_object = [float(np.exp(logp[(i, j)])) for j in range(len(objects))]
        out.append({"target": per_object[target], "objects": sum(per_object), "per_object": per_object})
    return out


def choice_report(policy_dir: str | Path, *, families=readable_families(False),
                  seed: int = 0, n_images: int = 64,
                  group: int = 8, temperature: float = 1.0, think: str = "echo", style: str = "segzero") -> dict:
    """Per family, on held-out scenes: the mean probability of sampling the target's cell, of
    sampling some object's cell, and the share of GRPO groups of `group` samples expected to hold
    both a hit and a miss (1 - p^n - (1-p)^n): the groups whose advantage can teach which object
    is meant."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(policy_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy_dir).eval()
    samples = [(text, image, objects, target, family)
               for family, text, image, objects, target in heldout_prompts(seed, n_images, families)]
    dist = choice_distribution(model, processor, [s[:4] for s in samples], temperature=temperature, think=think, style=style)
    report = {}
    for family in families:
        ps = [(d, s) for d, s in zip(dist, samples) if s[4] == family]
        target = np.array([d["target"] for d, _ in ps])
        report[family] = {"n": len(ps), "p_target": round(float(target.mean()), 4),
                          "p_objects": round(float(np.mean([d["objects"] for d, _ in ps])), 4),
                          "chance": round(float(np.mean([1 / len(s[2]) for _, s in ps])), 4),
                          "mixed_groups": round(float(np.mean(1 - target ** group - (1 - target) ** group)), 4)}
    return report
