"""The toy policy's tokenizer, losses and pretraining (rise/toy/policy.py), at a tiny size."""
import json
import random

import numpy as np
import pytest
import torch

from conftest import TINY_DIMS
from rise.answer import parse_answer
from rise.data import toy_world as world
from rise.data.toy_world import SIZE, answer_text, instructions, make_scene, scenes


def test_toy_tokenizer_writes_coordinates_as_single_tokens(tmp_path):
    from transformers import AutoProcessor

    from rise.toy.policy import build_toy_policy

    build_toy_policy(tmp_path / "p", dims=TINY_DIMS)
    tok = AutoProcessor.from_pretrained(tmp_path / "p").tokenizer
    rng = random.Random(0)
    numbers = set()
    for _ in range(50):
        o = make_scene(rng, 1)[0]
        pieces = [tok.decode([i]).strip(" [],") for i in tok(answer_text("the red circle", o))["input_ids"]]
        answer = answer_text("the red circle", o).split("<answer>")[1]
        for n in "".join(c if c.isdigit() else " " for c in answer).split():
            assert n in pieces, (n, pieces)
            numbers.add(n)
    assert len(numbers) >= 8



def test_a_fact_names_the_colour_and_shape_its_class_name_stands_for():
    rng = random.Random(0)
    for _ in range(30):
        question, answer = world.fact(rng)
        name = question.removeprefix("What is the ").removesuffix("?")
        (colour, shape), = [k for k, v in world.CLASS_NAMES.items() if v == name]
        assert answer == f"the {name} is a {colour} {shape}"
        entry_question, entry = world.fact_text(name, "entry")  # the think block's words after a name
        assert entry_question == question and entry == f"the {name}: {colour} {shape}"
        assert world.think_text(f"the {name}", objects_like(colour, shape), "compact").startswith(entry + " ")
    with pytest.raises(ValueError, match="unknown fact form 'essay'"):
        world.fact_text("tomato", "essay")


def objects_like(colour, shape):
    """A drawn object of this colour and shape."""
    rng = random.Random(0)
    return next(o for o in iter(lambda: make_scene(rng, 1)[0], None) if (o.colour, o.shape) == (colour, shape))


def test_a_shade_fact_names_the_colour_of_its_word_and_every_word_is_taught():
    rng = random.Random(0)
    taught = set()
    for _ in range(200):
        question, answer = world.shade_fact(rng)
        word = question.removeprefix("What colour is ").removesuffix("?")
        colour, = [c for c, words in world.SHADES.items() if word in words]
        assert answer == f"{word} is {colour}"
        taught.add(word)
    assert taught == {w for words in world.SHADES.values() for w in words}

def test_nonce_words_are_whole_tokens_that_no_family_uses(tmp_path):
    from transformers import AutoProcessor

    from rise.toy.policy import build_toy_policy

    build_toy_policy(tmp_path / "p", dims=TINY_DIMS)
    tok = AutoProcessor.from_pretrained(tmp_path / "p").tokenizer
    family_words = set()
    rng = random.Random(0)
    for _ in range(200):
        objects = make_scene(rng, 4)
        for family in world.FAMILIES:
            family_words |= {w for text, _ in instructions(objects, family) for w in text.split()}
    nonce_pieces = set()
    for word in world.NONCE_WORDS:
        pieces = tok.tokenize(f" {word}")
        assert len(pieces) == 1, (word, pieces)
        nonce_pieces |= set(pieces)
    assert not family_words & set(world.NONCE_WORDS)
    assert not nonce_pieces & {p for w in family_words for p in tok.tokenize(f" {w}")}


def test_policy_pretraining_and_report_run_at_a_tiny_size(tmp_path):
    from rise.toy.policy import (build_toy_policy, fact_report, policy_report, pretrain_policy,
                                 sampled_format_report)

    out = build_toy_policy(tmp_path / "p", dims=TINY_DIMS, shade_words=True)
    trained = pretrain_policy(out, steps=3, one_object_steps=1, two_object_steps=2, short_prompt_steps=1,
                              schedule_steps=5, segzero_share=0.5, nonce_share=0.5, fact_share=0.5,
                              shade_fact_share=0.3, batch_size=2,
                              think="referent", decision_weight=5, attention_weight=1.0, attention_layer=0,
                              previous_token_weight=1.0, attribute_weight=4, box_weight=3)
    assert trained["steps"] == 3 and trained["box_weight"] == 3 and trained["schedule_steps"] == 5 and trained["nonce_share"] == 0.5
    assert trained["fact_share"] == 0.5 and trained["shade_fact_share"] == 0.3 and trained["previous_token_weight"] == 1.0
    with pytest.raises(ValueError, match="schedule_steps: 2 is fewer than its steps"):
        pretrain_policy(out, steps=3, one_object_steps=1, schedule_steps=2, batch_size=2)
    with pytest.raises(ValueError, match="fact_form: 'essay' is not one of"):
        pretrain_policy(out, steps=3, one_object_steps=1, fact_form="essay", batch_size=2)
    config = json.loads((out / "config.json").read_text())  # trained with eager attention, saved for SDPA
    assert config.get("_attn_implementation", config.get("attn_implementation", "sdpa")) in ("sdpa", None)
    report = policy_report(out, families=("base", "classname"), n_images=2, batch_size=2)
    assert set(report) == {"base", "classname", "example"}
    assert 0 <= report["base"]["hit_rate"] <= 1 and 0 <= report["base"]["think_shape"] <= 1
    facts = fact_report(out)
    assert facts["n"] == len(world.CLASS_NAMES) and 0 <= facts["known"] <= 1 and "shades_known" not in facts
    assert 0 <= fact_report(out, shade_words=True)["shades_known"] <= 1
    sampled = sampled_format_report(out, families=("base", "colour"), n_images=2, group=3, max_new_tokens=8)
    assert set(sampled) == {"base", "colour"} and sampled["base"]["n"] == 6
    assert sum(sampled["colour"][k] for k in ("valid", "box_only", "no_box")) == pytest.approx(1.0)


def test_answer_format_is_what_the_rewards_make_of_an_answer():
    """Sampled answers of a pretrained toy base (docs/toy-log.md, tenth round): R_sem reads the first
    JSON object's box, R_seg needs both points as well."""
    from rise.toy.policy import answer_format

    head = '<think>the yellow circle: yellow circle 3 4</think><answer>{"bbox": [84,56,112,112], '
    assert answer_format(head + '"points_1": [98,74], "points_2": [98,78]}</answer>') == "valid"
    # closed after the first point, the rest rambling: R_sem in full, R_seg 0
    assert answer_format(head + '"points_1": [98,74]}</98], "points_2": [98,74]}</answer') == "box_only"
    assert answer_format(head.replace(', ', '') + '}</answer>') == "box_only"
    # broken in the points: the first {...} is not strict JSON, so no box either
    assert answer_format(head + '"points_1": [98,74], "points_46]}</answer>') == "no_box"
    assert answer_format(head.replace("[84,56,112,112]", "[84,56,84,112]") + '"points_1": [98,74], '
                         '"points_2": [98,78]}</answer>') == "no_box"  # a zero-width box
    assert answer_format(head.replace('"bbox"', "'bbox'") + '"points_1": [98,74], "points_2": [98,78]}</answer>') == "no_box"



def test_made_up_words_and_facts_from_a_later_step_leave_the_earlier_steps_as_without_them(tmp_path):
    """`nonce_from_step`, `fact_from_step`: the steps before draw the same scenes and train the same
    weights as a run without made-up words or facts; from it on, they change what is learnt."""
    from safetensors.torch import load_file

    from rise.toy.policy import build_toy_policy, pretrain_policy

    def weights(name, **nonce):
        out = build_toy_policy(tmp_path / name, dims=TINY_DIMS)
        report = pretrain_policy(out, steps=3, one_object_steps=0, two_object_steps=0, batch_size=4,
                                 think="compact", **nonce)
        return report, load_file(out / "model.safetensors")

    _, plain = weights("plain")
    for kind in ("nonce", "fact"):
        report, late = weights(f"{kind}-late", **{f"{kind}_share": 1.0, f"{kind}_from_step": 3})
        _, early = weights(f"{kind}-early", **{f"{kind}_share": 1.0, f"{kind}_from_step": 2})
        assert report[f"{kind}_from_step"] == 3
        assert all(torch.equal(plain[k], late[k]) for k in plain), kind
        assert not all(torch.equal(plain[k], early[k]) for k in plain), kind

def test_grounded_names_are_taught_grounded_and_leave_the_stream_as_it_was_when_off(tmp_path, monkeypatch):
    """`grounded_names` with `grounded_share`: that share of the examples names an object by one of
    those class names, with the grounded answer; with no share, the examples and weights are those of
    a run without the setting. An unknown name is named."""
    from safetensors.torch import load_file

    import rise.toy.policy as policy

    taught = []
    answer_text = policy.answer_text
    monkeypatch.setattr(policy, "answer_text", lambda text, obj, **kw: taught.append((text, obj.name))
                        or answer_text(text, obj, **kw))

    def run(name, **grounded):
        out = policy.build_toy_policy(tmp_path / name, dims=TINY_DIMS)
        taught.clear()  # (building the tokenizer writes answers too)
        policy.pretrain_policy(out, steps=3, one_object_steps=0, two_object_steps=0, batch_size=4, think="compact",
                               **grounded)
        return list(taught), load_file(out / "model.safetensors")

    plain_texts, plain = run("plain")
    off_texts, off = run("off", grounded_names=["tomato", "sail"], grounded_share=0.0)
    assert off_texts == plain_texts and all(torch.equal(plain[k], off[k]) for k in plain)
    on_texts, _ = run("on", grounded_names=list(world.CLASS_NAMES.values()), grounded_share=1.0)
    named = [text == f"the {name}" for text, name in on_texts]
    assert sum(named) >= 0.75 * len(named)  # every scene with an object of a unique colour and shape
    assert not any(text == f"the {name}" for text, name in plain_texts)  # the base family alone
    with pytest.raises(ValueError, match=r"grounded_names: \['teapot'\] are not class names"):
        policy.pretrain_policy(tmp_path / "on", steps=1, one_object_steps=0, batch_size=2, grounded_names=["teapot"])


def test_the_base_check_reads_the_policy_report_against_the_declared_ranges(tmp_path):
    import json

    from rise.config import PROJECT_ROOT, load_settings
    from rise.toy.models import base_check_problems, pretrained_models

    checked = {"presets": {"toy": {"pretrain": {"base_check": {"classname": [0.3, 0.7], "colour": [0.9, 1.0]}}}}}
    s = load_settings(PROJECT_ROOT / "params.yaml", "toy", root=tmp_path, overrides=checked)
    report = tmp_path / pretrained_models(s)["policy"]["report"]
    s.models["policies"] = {k: str(tmp_path / v) for k, v in s.models["policies"].items()}
    assert "no pretraining report" in base_check_problems(s)[0]
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"heldout": {"greedy": {"classname": {"hit_rate": 0.4}, "colour": {"hit_rate": 1.0}}}}))
    assert base_check_problems(s) == []
    report.write_text(json.dumps({"heldout": {"greedy": {"classname": {"hit_rate": 1.0}, "colour": {"hit_rate": 1.0}}}}))
    [problem] = base_check_problems(s)
    assert "'classname' at a greedy hit rate of 1.0" in problem and "[0.3, 0.7]" in problem
    assert "presets.toy.pretrain.base_check" in problem
    assert base_check_problems(load_settings(PROJECT_ROOT / "params.yaml", "toy")) == []  # none declared


@pytest.mark.parametrize("think", world.THINK_STYLES)
def test_choice_distribution_is_the_probability_of_writing_each_objects_think(tmp_path, think):
    """Checked against the log-probabilities of each object's think block, read from one
    teacher-forced pass over its full answer (a different code path: no prefixes, no padding)."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from rise.prompts import conversation
    from rise.toy.policy import build_toy_policy, choice_distribution, choice_report

    out = build_toy_policy(tmp_path / "p", dims=TINY_DIMS)
    processor = AutoProcessor.from_pretrained(out)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    stream = scenes(0, "t")
    samples = []
    for _ in range(3):
        objects, image = next(stream)
        text, target = instructions(objects, "shape")[0] if instructions(objects, "shape") else ("the blicket", 0)
        samples.append((text, image, objects, target))
    dist = choice_distribution(model, processor, samples, batch_size=3, think=think)
    tok = processor.tokenizer
    for (text, image, objects, target), d in zip(samples, dist):
        prompt = processor.apply_chat_template(conversation(text), add_generation_prompt=True, tokenize=False)
        for o, p in zip(objects, d["per_object"]):
            full = answer_text(text, o, think=think)
            batch = processor(text=[prompt + full], images=[image], return_tensors="pt")
            with torch.no_grad():
                logp = torch.log_softmax(model(**batch).logits[0], -1)
            ids = batch["input_ids"][0].tolist()
            # the think's tokens after the instruction, up to its column number
            start = len(processor(text=[prompt + f"<think>{text}"], images=[image])["input_ids"][0])
            stop = len(processor(text=[prompt + "<think>" + world.think_text(text, o, think)],
                                 images=[image])["input_ids"][0])
            assert tok.decode(ids[stop - 1]).strip() == str(o.col + 1)
            expected = float(torch.exp(sum(logp[k - 1, ids[k]] for k in range(start, stop))))
            assert p == pytest.approx(expected, rel=1e-3, abs=1e-9)
        assert d["target"] == d["per_object"][target] and d["objects"] <= 1 + 1e-6
    report = choice_report(out, families=("base", "colour"), n_images=2, think=think)
    assert 0 <= report["base"]["p_target"] <= report["base"]["p_objects"] <= 1
    assert 0 <= report["colour"]["mixed_groups"] <= 1


def test_answer_loss_is_the_models_loss_at_weight_one_and_weighs_each_token_set():
    from rise.toy.policy import answer_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 10)
    labels = torch.tensor([[-100, 3, 7, 4, 2, -100], [-100, -100, 7, 7, 1, 5]])
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    decisions = torch.tensor([7])
    assert answer_loss(logits, labels, ((decisions, 1.0),)).item() == pytest.approx(plain.item(), rel=1e-6)
    token = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                              ignore_index=-100, reduction="none")
    is_decision = labels[:, 1:].flatten() == 7
    taught = labels[:, 1:].flatten() != -100
    expected = (10 * token[is_decision].sum() + token[taught & ~is_decision].sum()) / (10 * is_decision.sum()
                                                                                      + (taught & ~is_decision).sum())
    assert answer_loss(logits, labels, ((decisions, 10),)).item() == pytest.approx(expected.item(), rel=1e-6)
    attributes = torch.tensor([4, 5])
    is_attribute = torch.isin(labels[:, 1:].flatten(), attributes)
    rest = taught & ~is_decision & ~is_attribute
    expected = (10 * token[is_decision].sum() + 3 * token[is_attribute].sum() + token[rest].sum()) / (
        10 * is_decision.sum() + 3 * is_attribute.sum() + rest.sum())
    assert answer_loss(logits, labels, ((decisions, 10), (attributes, 3))).item() == pytest.approx(expected.item(), rel=1e-6)


def test_box_number_ids_are_the_tokens_of_the_answers_box(tmp_path):
    from rise.toy.policy import box_number_ids, build_toy_policy
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_toy_policy(tmp_path / "p", dims=TINY_DIMS))
    ids = box_number_ids(tok)
    obj = world.make_scene(random.Random(3), 1)[0]
    answer = tok(world.answer_text(f"the {obj.colour} {obj.shape}", obj), add_special_tokens=False)["input_ids"]
    box = [int(v) for v in obj.cell_box]
    # each box number is one of the ids, and the points' numbers are none of them
    assert len(set(ids.tolist())) == world.GRID + 1
    assert [i for i in answer if i in ids.tolist()] == [tok.convert_tokens_to_ids(str(v)) for v in box]


def test_think_attributes_are_the_last_colour_and_shape_the_think_block_names():
    from rise.toy.policy import think_attributes

    assert think_attributes('<think>the lime: green triangle 1 2</think><answer>{"bbox": []}</answer>') == (
        "green", "triangle")
    assert think_attributes("<think>the red circle: the blue square, in row 1, column 2</think>") == ("blue", "square")
    assert think_attributes("<think>the tomato is in row 1</think> red circle") == (None, None)


@pytest.mark.parametrize("style", world.THINK_STYLES)
def test_every_think_style_parses_and_names_the_cell(style):
    o = make_scene(random.Random(5), 1)[0]
    text = answer_text("the tomato", o, think=style)
    assert parse_answer(text, SIZE, SIZE).ok
    think = text.split("<think>")[1].split("</think>")[0]
    assert think.startswith("the tomato") and str(o.row + 1) in think and think.endswith(str(o.col + 1))
    if style != "echo":
        assert o.colour in think and o.shape in think
    with pytest.raises(ValueError, match="think style"):
        answer_text("the tomato", o, think="poem")


def test_attention_loss_reads_the_targets_image_token_from_each_decision():
    from rise.toy.policy import attention_loss

    image, decision = 9, torch.tensor([5])
    input_ids = torch.tensor([[1, 9, 9, 9, 9, 2, 5, 3]])
    next_labels = torch.tensor([[-100, -100, -100, -100, -100, 5, 3, 5]])[:, 1:]  # decisions at 4 and 6
    attention = torch.full((1, 7, 8), 0.01)
    attention[0, 4, 3] = 0.5  # the target is the image's third token (cell 2), at position 3
    attention[0, 6, 3] = 0.25
    loss = attention_loss(attention, input_ids, next_labels, decision, image, [2])
    assert loss.item() == pytest.approx(-(np.log(0.5 + 1e-6) + np.log(0.25 + 1e-6)) / 2, rel=1e-5)


def test_previous_token_loss_reads_each_answer_positions_attention_to_the_token_before():
    from rise.toy.policy import previous_token_loss

    next_labels = torch.tensor([[-100, -100, 7, 8], [-100, -100, -100, 8]])  # taught: (0, 2), (0, 3), (1, 3)
    attention = torch.full((2, 4, 4), 0.1)
    attention[0, 2, 1], attention[0, 3, 2], attention[1, 3, 2] = 0.5, 0.25, 0.8
    attention[0, 2, 2] = 0.9  # attention elsewhere is not what is taught
    loss = previous_token_loss(attention, next_labels)
    expected = -(np.log(0.5 + 1e-6) + np.log(0.25 + 1e-6) + np.log(0.8 + 1e-6)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert previous_token_loss(attention, torch.full((2, 4), -100)).item() == 0.0


def test_an_attention_layer_the_policy_lacks_is_named(tmp_path):
    from rise.toy.policy import build_toy_policy, pretrain_policy

    out = build_toy_policy(tmp_path / "p", dims=TINY_DIMS)
    with pytest.raises(ValueError, match="attention_layer: 3 is not a layer"):
        pretrain_policy(out, steps=1, one_object_steps=1, batch_size=1, attention_weight=1.0, attention_layer=3)


def test_box_iou():
    from rise.toy.policy import box_iou

    assert box_iou([0, 0, 28, 28], [0, 0, 28, 28]) == 1
    assert box_iou([0, 0, 28, 28], [28, 0, 56, 28]) == 0
    assert box_iou([0, 0, 28, 28], [14, 0, 42, 28]) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------- settings


def test_token_targets_place_only_objects_when_the_floor_has_no_position():
    from rise.toy.policy import token_targets
    from rise.data.toy_world import GRID

    objects = make_scene(random.Random(4), 3)
    placed, unplaced = token_targets(objects, True), token_targets(objects, False)
    cells = {o.row * GRID + o.col: o for o in objects}
    for k in range(GRID * GRID):
        assert placed["row"][k] == k // GRID and placed["col"][k] == k % GRID
        if k in cells:
            assert (unplaced["row"][k], unplaced["col"][k]) == (cells[k].row, cells[k].col)
            assert unplaced["shape"][k] == ("circle", "square", "triangle").index(cells[k].shape)
        else:
            assert unplaced["row"][k] == GRID and unplaced["col"][k] == GRID and unplaced["shape"][k] == 3
    assert torch.equal(placed["colour"], unplaced["colour"])


def test_vision_tower_pretraining_runs_at_a_tiny_size(tmp_path):
    from rise.toy.policy import build_toy_policy, pretrain_vision

    out = build_toy_policy(tmp_path / "p", dims=TINY_DIMS)
    for floor_position, cosine_heads in ((True, False), (False, True)):
        trained = pretrain_vision(out, steps=2, batch_size=2, floor_position=floor_position, cosine_heads=cosine_heads)
        assert set(trained["token_accuracy"]) == {"row", "col", "colour", "shape"}


# --------------------------------------------------------------------------------------------- entries
