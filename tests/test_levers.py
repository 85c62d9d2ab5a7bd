"""The training step's cost levers (`train.attn_implementation`, `train.encode_images_once`) leave
the loss and its gradients unchanged, up to float rounding, on the demo's tiny Qwen2.5-VL."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from rise.models import encode_each_image_once, load_policy
from rise.prompts import conversation


def batch_with_repeated_images(processor, completions_per_image=3):
    """A GRPO-shaped batch: two images, each repeated once per completion, with different texts."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(2)]
    texts, batch_images = [], []
    for i, image in enumerate(images):
        for k in range(completions_per_image):
            prompt = processor.apply_chat_template(conversation(f"the object number {i}"), add_generation_prompt=True,
                                                   tokenize=False)
            texts.append(prompt + f"<think>answer {k} of image {i}</think>")
            batch_images.append(image)
    return processor(text=texts, images=batch_images, padding=True, return_tensors="pt")


def loss_and_grads(model, inputs):
    """A GRPO-like scalar: the mean log-probability of every next token, and its gradient."""
    model.zero_grad()
    logits = model(**inputs).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, inputs["input_ids"][:, 1:, None]).squeeze(-1)
    real = inputs["attention_mask"][:, :-1] * inputs["attention_mask"][:, 1:]  # left padding: a pad predicts nothing
    loss = -(logps * real).sum() / real.sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a, b, atol):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=atol)
    assert grads_a.keys() == grads_b.keys() and any("visual" in n for n in grads_a)  # both towers trained
    worst = max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a)
    scale = max(g.abs().max().item() for g in grads_a.values())
    assert worst <= atol * max(scale, 1.0), (worst, scale)


@pytest.fixture(scope="module")
def policy(demo_project):
    return load_policy(str(demo_project / "runs/demo/models/policy"))


def test_encoding_each_image_once_computes_the_same_loss_and_gradients_with_a_third_of_the_encoding(policy):
    model, processor = policy
    inputs = batch_with_repeated_images(processor)
    once = copy.deepcopy(model)
    encode_each_image_once(once)
    patches = []
    once.model.visual.register_forward_hook(lambda module, args, out: patches.append(args[0].shape[0]))
    assert_same(loss_and_grads(model, inputs), loss_and_grads(once, inputs), atol=1e-5)
    assert patches == [inputs["pixel_values"].shape[0] // 3]  # 2 distinct images encoded, not 6


def test_a_batch_of_distinct_images_goes_through_unchanged(policy):
    model, processor = policy
    inputs = batch_with_repeated_images(processor, completions_per_image=1)
    once = copy.deepcopy(model)
    encode_each_image_once(once)
    assert_same(loss_and_grads(model, inputs), loss_and_grads(once, inputs), atol=0)  # bitwise: the same call


def test_eager_attention_computes_the_same_loss_and_gradients_as_sdpa(demo_project, policy):
    sdpa, processor = policy
    eager, _ = load_policy(str(demo_project / "runs/demo/models/policy"), attn_implementation="eager")
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    inputs = batch_with_repeated_images(processor)
    assert_same(loss_and_grads(sdpa, inputs), loss_and_grads(eager, inputs), atol=1e-5)


def test_the_levers_reach_the_policy_and_the_kl_reference_in_training(in_demo):
    """One GRPO step with both levers off and on: the settings reach both models, and the step
    moves the weights the same way (up to float rounding)."""
    from rise.train import train_variant

    seen = {}

    def record(trainer):
        seen[trainer.args.output_dir] = [
            (m.config._attn_implementation, getattr(m.model, "_encodes_each_image_once", False))
            for m in (trainer.model, trainer.ref_model)]

    from safetensors.torch import load_file

    weights = {}
    for name, attention, once in (("levers_off_3b", "eager", False), ("levers_on_3b", "sdpa", True)):
        from rise.config import Variant

        variant = Variant(**{**in_demo.variants["full_3b"].__dict__, "name": name})
        settings = dataclasses.replace(in_demo, variants={**in_demo.variants, name: variant},
                                       train=dataclasses.replace(in_demo.train, max_steps=1, attn_implementation=attention,
                                                                 encode_images_once=once))
        train_variant(settings, name, on_trainer=record)
        weights[name] = load_file(str(settings.layout.checkpoint_dir(name) / "final/model.safetensors"))
    assert sorted(seen.values()) == [[("eager", False)] * 2, [("sdpa", True)] * 2]
    off, on = weights["levers_off_3b"], weights["levers_on_3b"]
    assert max((off[k] - on[k]).abs().max().item() for k in off) < 1e-6
