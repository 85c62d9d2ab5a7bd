"""The toy world: generator, the three pretraining stages at a tiny size, and their reports."""
import json
import random

import numpy as np
import pytest
import torch

from rise.answer import parse_answer
from rise.toy import world
from rise.toy.world import CELL, SIZE, answer_points, answer_text, instructions, make_scene, scenes, write_split


def test_scenes_are_seeded_and_splits_independent():
    a, b, c = scenes(0, "train"), scenes(0, "train"), scenes(0, "test")
    (oa, ia), (ob, ib), (oc, _) = next(a), next(b), next(c)
    assert np.array_equal(np.array(ia), np.array(ib))
    assert [(o.colour, o.shape, o.row, o.col) for o in oa] == [(o.colour, o.shape, o.row, o.col) for o in ob]
    assert [(o.row, o.col) for o in oa] != [(o.row, o.col) for o in oc] or len(oa) != len(oc)


def test_objects_sit_in_distinct_cells_inside_their_cell():
    rng = random.Random(3)
    for _ in range(50):
        objects = make_scene(rng, 4)
        assert len({(o.row, o.col) for o in objects}) == 4
        for o in objects:
            x1, y1, x2, y2 = o.cell_box
            ys, xs = np.nonzero(o.mask)
            assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2


@pytest.mark.parametrize("family", world.FAMILIES)
def test_every_instruction_names_exactly_one_object(family):
    rng = random.Random(1)
    seen = 0
    for _ in range(100):
        objects = make_scene(rng, 4)
        for text, target in instructions(objects, family):
            seen += 1
            o = objects[target]
            matches = {"base": lambda p: (p.colour, p.shape) == (o.colour, o.shape),
                       "classname": lambda p: p.name == o.name,
                       "colour": lambda p: p.colour == o.colour,
                       "shape": lambda p: p.shape == o.shape,
                       "shade": lambda p: p.colour == o.colour}[family]
            assert sum(matches(p) for p in objects) == 1
            assert (o.colour in text.split()) == (family in ("base", "colour"))
            if family == "shade":  # a word for a shade of the target's colour, never the colour's own
                assert text.split()[1] in world.SHADES[o.colour] and text.endswith(" shape")
    assert seen > 50


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="family"):
        instructions(make_scene(random.Random(0), 2), "spatial")


def test_answer_is_the_real_format_with_the_cell_box_and_points_inside_the_object():
    rng = random.Random(2)
    for _ in range(100):
        o = make_scene(rng, 1)[0]
        ans = parse_answer(answer_text("the red circle", o), SIZE, SIZE)
        assert ans.ok and list(ans.box) == o.cell_box
        for x, y in answer_points(o):
            assert o.mask[int(y), int(x)], (o.shape, o.r)


def test_write_split_writes_manifest_rows_with_exact_masks(tmp_path):
    from rise.contracts import EVAL_FIELDS, decode_mask

    rows = write_split("toyset", "test", 5, ["base", "classname"], tmp_path, seed=0)
    assert rows and {r["kind"] for r in rows} <= {"base", "classname"}
    for r in rows:
        assert set(EVAL_FIELDS) <= set(r)
        assert decode_mask(r["mask"]).shape == (SIZE, SIZE) and decode_mask(r["mask"]).sum() > 50
    assert rows == write_split("toyset", "test", 5, ["base", "classname"], tmp_path, seed=0)


# --------------------------------------------------------------------------------------------- CLIP

def test_contrastive_loss_prefers_matching_pairs():
    from rise.toy.clip import contrastive_loss

    feats = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    positives = torch.eye(6)
    scale = torch.tensor(np.log(10.0))
    aligned = contrastive_loss(feats, feats, scale, positives)
    shuffled = contrastive_loss(feats, feats.roll(1, 0), scale, positives)
    assert aligned < shuffled


def test_crop_descriptions_and_claims_agree():
    from rise.toy.clip import describes, sample_crops, text_for

    rng = random.Random(0)
    for _ in range(200):
        objects = make_scene(rng, 3)
        _, crop = sample_crops(objects, rng)
        _, claim = text_for(crop, rng)
        assert describes(claim, crop)


def test_clip_pretraining_writes_a_model_the_reward_loads(tmp_path):
    from rise.models import TINY_CLIP_NAME, load_clip
    from rise.toy.clip import clip_report, pretrain_clip

    out = tmp_path / "clip.pt"
    trained = pretrain_clip(out, steps=2, batch_size=8)
    assert trained["steps"] == 2 and out.exists()
    load_clip(TINY_CLIP_NAME, str(out))
    report = clip_report(out, n_scenes=2)
    assert 0 <= report["zero_shot_accuracy_classname"] <= 1 and report["heldout_crops"] >= 4


# --------------------------------------------------------------------------------------------- SAM2

def test_sam2_pretraining_writes_a_checkpoint_the_predictor_loads(tmp_path):
    from rise.toy.sam2 import pretrain_sam2, sam2_report

    out = tmp_path / "sam2.pt"
    cfg = "configs/sam2.1/sam2.1_hiera_t.yaml"
    trained = pretrain_sam2(out, config=cfg, image_size=128, steps=1, batch_size=1)
    assert trained["steps"] == 1
    report = sam2_report(out, config=cfg, image_size=128, n_images=1)
    assert 0 <= report["mask_iou_tight_box"] <= 1 and report["heldout_objects"] >= 2


def test_sam2_loss_trains_every_output_on_the_prompted_object():
    from rise.toy.sam2 import mask_loss

    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:6] = True
    good = torch.where(target[0], 10.0, -10.0)
    bad = -good
    all_good = mask_loss(torch.stack([good, good, good])[None], torch.ones(1, 3), target)
    one_good = mask_loss(torch.stack([good, bad, bad])[None], torch.tensor([[1.0, 0.0, 0.0]]), target)
    assert all_good < 0.1 < one_good


# --------------------------------------------------------------------------------------------- policy

TINY_DIMS = {"text_hidden": 32, "text_layers": 1, "text_heads": 2, "vision_depth": 1, "vision_width": 16}


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
    """Sampled answers of a pretrained toy base (docs/toy.md, tenth round): R_sem reads the first
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

def test_toy_preset_loads_and_prepares_its_datasets(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.contracts import load_eval_manifest
    from rise.data import prepare_dataset
    from rise.toy.pipeline import pretrain_settings

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    assert set(pretrain_settings(settings)) >= {"clip", "sam2", "policy"}
    settings.datasets["reasonseg_test"]["n_images"] = 3
    rows = load_eval_manifest(prepare_dataset(settings, "reasonseg_test"))
    assert rows and all(r["image"].startswith(str(tmp_path)) for r in rows)


def test_the_toy_preset_trains_on_the_class_names_alone_with_scenes_enough_for_its_train_set():
    """RISE trains on the family its base half-knows (docs/toy.md "Fifteenth round"); a scene gives a
    class-name instruction only where an object is unique, so n_images must cover the train set's n
    (too few fails at sample-train, after the pretraining)."""
    import itertools

    from rise.config import PROJECT_ROOT, load_settings

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy")
    train_set = settings.train_sets["refcocog_2k"]
    spec = settings.datasets[train_set["dataset"]]
    assert spec["families"] == ["classname"]
    drawn = itertools.islice(scenes(settings.seed, spec["split"]), spec["n_images"])
    assert sum(bool(instructions(objects, "classname")) for objects, _ in drawn) >= train_set["n"]


def test_the_shade_family_needs_its_words_taught_and_says_which_setting(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.contracts import load_eval_manifest
    from rise.data import prepare_dataset
    from rise.errors import ConfigError
    from rise.toy.pipeline import pretrain

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    settings.datasets["reasonseg_test"].update(n_images=3, families=["colour", "shade"])
    with pytest.raises(ConfigError, match=r"presets.toy.datasets.reasonseg_test.families has 'shade'.*shade_words"):
        prepare_dataset(settings, "reasonseg_test")
    settings.pretrain["policy"]["shade_fact_share"] = 0.01
    with pytest.raises(ConfigError, match=r"pretrain.policy.shade_fact_share is 0.01 but pretrain.shade_words is off"):
        pretrain(settings, "policy")
    settings.pretrain["shade_words"] = True
    shade = [r for r in load_eval_manifest(prepare_dataset(settings, "reasonseg_test")) if r["kind"] == "shade"]
    assert shade and all(r["instruction"].split()[1] in {w for ws in world.SHADES.values() for w in ws} for r in shade)


def test_without_shade_words_the_tokenizer_and_clip_texts_are_those_of_a_world_without_them(tmp_path):
    from rise.toy.clip import descriptions
    from rise.toy.policy import toy_corpus

    shade = {w for ws in world.SHADES.values() for w in ws}
    assert not any(w in text.split() for text in toy_corpus() for w in shade)
    assert any(f" {w} " in text for text in toy_corpus(shade_words=True) for w in shade)
    obj = make_scene(random.Random(0), 1)[0]
    assert [t for t, _ in descriptions(obj, shade_words=True)][:len(descriptions(obj))] == [t for t, _ in descriptions(obj)]
    assert {t.split()[1] for t, _ in descriptions(obj, shade_words=True)} - {t.split()[1] for t, _ in descriptions(obj)} \
        == set(world.SHADES[obj.colour])


def test_pretrain_settings_missing_names_the_setting(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.errors import ConfigError
    from rise.toy.pipeline import pretrain_settings

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="demo", root=tmp_path)
    with pytest.raises(ConfigError, match="presets.demo.pretrain"):
        pretrain_settings(settings)


def test_token_targets_place_only_objects_when_the_floor_has_no_position():
    from rise.toy.policy import token_targets
    from rise.toy.world import GRID

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

def tiny_toy_project(tmp_path):
    import yaml

    from conftest import copy_project

    models = tmp_path / "models"
    overrides = {"presets": {"toy": {
        "pretrain": {"seed": 0,
                     "clip": {"steps": 2, "batch_size": 8, "learning_rate": 1e-3, "report_scenes": 2},
                     "sam2": {"steps": 1, "batch_size": 1, "learning_rate": 3e-4, "report_images": 1},
                     "policy": {"vision_steps": 1, "steps": 2, "one_object_steps": 1, "short_prompt_steps": 1,
                                "batch_size": 2, "learning_rate": 1e-3, "report_images": 1, "dims": TINY_DIMS,
                                "attention_layer": 0}},
        "models": {"policies": {"3b": str(models / "policy"), "7b": str(models / "policy")},
                   "clip": {"model": "RISE-tiny-CLIP", "pretrained": str(models / "clip.pt")},
                   "sam2": {"config": "configs/sam2.1/sam2.1_hiera_t.yaml", "checkpoint": str(models / "sam2.pt"),
                            "image_size": 128}}}}}
    root = copy_project(tmp_path / "project", overrides)
    assert yaml.safe_load((root / "params.yaml").read_text())["presets"]["toy"]["pretrain"]["clip"]["steps"] == 2
    return root, models


@pytest.mark.parametrize("stage, model", [("clip", "clip.pt"), ("sam2", "sam2.pt"), ("policy", "policy")])
def test_pretrain_entry_writes_the_model_and_its_report(tmp_path, stage, model):
    import json
    import subprocess
    import sys

    root, models = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "pretrain", stage], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((models / f"{model}.report.json").read_text())
    assert report["stage"] == stage and report["heldout"] and (models / model).exists()


def test_prepare_data_entry_names_an_unknown_dataset(tmp_path):
    import subprocess
    import sys

    root, _ = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "prepare-data", "nosuch"], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "nosuch" in proc.stderr and "presets.toy.datasets" in proc.stderr


def test_measure_entry_names_an_unknown_variant(tmp_path):
    import subprocess
    import sys

    root, _ = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "measure", "--root", str(tmp_path / "run"),
                           "--variants", "full_3b,nosuch"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "nosuch" in proc.stderr



def test_measure_draws_the_training_set_at_the_presets_seed_like_the_workflow(tmp_path, monkeypatch):
    """Seed s of `measure` is the table's seed s: only GRPO's seed moves, the training set does not."""
    import rise.data
    import rise.evaluate
    import rise.predict
    import rise.sampling
    import rise.train
    from rise.toy import measure as measure_mod

    root, _ = tiny_toy_project(tmp_path)
    drawn, trained = [], []
    monkeypatch.setattr(rise.data, "prepare_dataset", lambda settings, name: None)
    monkeypatch.setattr(rise.sampling, "sample_train_set", lambda settings, name: drawn.append(settings.seed))
    monkeypatch.setattr(rise.train, "train_variant",
                        lambda settings, v: trained.append((settings.train["seeds"], settings.layout.primary_seed)))
    monkeypatch.setattr(rise.predict, "predict", lambda settings, v, eval_set: None)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"gIoU": 1.0, "cIoU": 1.0, "n_failed_parse": 0}))
    monkeypatch.setattr(rise.evaluate, "evaluate", lambda settings, v, eval_set: metrics)
    monkeypatch.setattr(measure_mod, "family_scores", lambda settings, v, eval_set: {})
    monkeypatch.setattr(measure_mod, "training_signal", lambda settings, v: {})
    preset_seed = measure_mod.load_settings(root / "params.yaml", preset="toy", root=tmp_path / "x").seed
    records = measure_mod.measure(root / "params.yaml", tmp_path / "run", 2, ["full_3b"])
    assert drawn == [preset_seed] and preset_seed != 2
    assert trained == [([2], 2)] and records[0]["seed"] == 2


def test_group_ranking_reads_how_a_reward_orders_each_groups_hits():
    from rise.toy.measure import group_ranking

    rewards = [[0.9, 0.2, 0.3, 0.2], [0.5, 0.5], [0.1, 0.8, 0.4]]
    hits = [[True, False, False, False], [False, False], [True, False, False]]
    r = group_ranking(rewards, hits)
    assert r["groups"] == 3 and r["mixed_groups"] == round(2 / 3, 3)
    assert r["best_is_hit"] == 0.5  # the first mixed group's best is its hit, the third's is a miss
    assert r["reward_hit"] == 0.5 and r["reward_miss"] == round(float(np.mean([0.2, 0.3, 0.2, 0.5, 0.5, 0.8, 0.4])), 3)
    first = (0.9 - 0.4) / (np.std([0.9, 0.2, 0.3, 0.2]) + 1e-4)
    third = (0.1 - 13 / 30) / (np.std([0.1, 0.8, 0.4]) + 1e-4)
    assert r["hit_advantage"] == round(float((first + third) / 2), 3)
    assert r["hit_rate"] == round(2 / 9, 3)


def test_rank_rewards_and_compare_updates_entries_read_a_policys_sampled_groups(tmp_path):
    import subprocess
    import sys

    root, models = tiny_toy_project(tmp_path)
    for stage in ("clip", "policy"):
        proc = subprocess.run([sys.executable, "-m", "rise.toy", "pretrain", stage], cwd=root,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "rank-rewards", str(models / "policy"), "--prompts", "1"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert set(report) == {"classname", "shape"} and all(r["groups"] == 1 for r in report.values())
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "compare-updates", str(models / "policy"),
                           "--prompts", "1", "--steps", "1,2", "--updates", "grpo,grpo_kl,grpo_positive,supervised_on_hits"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["answers"] == 2 * 8
    assert set(report["grpo"]) == set(report["grpo_kl"]) == set(report["grpo_positive"]) == {"step 1", "step 2"}
    if report["hit_rate"]:
        assert set(report["supervised_on_hits"]) == {"step 1", "step 2"}
    else:  # a random tiny policy rarely finds the cell: nothing to learn from, said so
        assert report["supervised_on_hits"] == {"skipped": "the batch holds no hit to learn from"}
    assert 0 <= report["grpo"]["step 2"]["fresh_hit_rate"] <= 1
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "compare-updates", str(models / "policy"), "--steps", "a"],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "--steps a" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "compare-updates", str(models / "policy"),
                           "--updates", "grpo,nosuch"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "nosuch" in proc.stderr

def test_family_scores_counts_a_box_on_the_target_cell_as_a_hit(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.contracts import write_jsonl
    from rise.toy.measure import family_scores
    from rise.contracts import decode_mask, load_eval_manifest
    from rise.data import prepare_dataset

    settings = load_settings(PROJECT_ROOT / "params.yaml", preset="toy", root=tmp_path)
    settings.datasets["reasonseg_test"]["n_images"] = 4
    rows = load_eval_manifest(prepare_dataset(settings, "reasonseg_test"))
    preds = []
    for k, r in enumerate(rows):
        ys, xs = np.nonzero(decode_mask(r["mask"]))
        row, col = int(ys.mean() // CELL), int(xs.mean() // CELL)
        right = [col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL]
        preds.append({"sample_id": r["sample_id"], "box": right if k % 2 == 0 else None})
    layout = settings.layout
    write_jsonl(layout.predictions("v", "reasonseg_test"), preds)
    layout.sample_scores("v", "reasonseg_test").parent.mkdir(parents=True, exist_ok=True)
    layout.sample_scores("v", "reasonseg_test").write_text(
        "sample_id,iou,kind\n" + "".join(f"{r['sample_id']},{1.0 if k % 2 == 0 else ''},{r['kind']}\n"
                                         for k, r in enumerate(rows)))
    scores = family_scores(settings, "v", "reasonseg_test")
    hits = sum(s["hit_rate"] * sum(r["kind"] == kind for r in rows) for kind, s in scores.items())
    assert round(hits) == (len(rows) + 1) // 2


def test_summarise_gives_mean_and_seed_standard_deviation_per_variant():
    from rise.toy.measure import summarise

    def record(variant, seed, giou, hit):
        return {"variant": variant, "seed": seed, "gIoU": giou, "cIoU": giou / 2,
                "families": {"colour": {"gIoU": giou, "hit_rate": hit}}}

    rows = summarise([record("full_3b", 0, 50.0, 0.5), record("full_3b", 1, 54.0, 0.7),
                      record("format_only_3b", 0, 30.0, 0.3)])
    full, fmt = rows
    assert full["variant"] == "full_3b" and full["seeds"] == 2
    assert full["gIoU"] == 52.0 and full["gIoU std"] == pytest.approx(2.83, abs=0.01)
    assert full["cIoU std"] == pytest.approx(1.41, abs=0.01) and full["hit_rate"]["colour"] == 0.6
    assert fmt["gIoU std"] == 0.0


def test_measure_entry_refuses_a_setting_without_a_value(tmp_path):
    import subprocess
    import sys

    root, _ = tiny_toy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rise.toy", "measure", "--root", str(tmp_path / "run"),
                           "--variants", "full_3b", "--set", "beta"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and "--set beta" in proc.stderr


def _claim_table(path, rows):
    import pandas as pd

    pd.DataFrame([{"label": label, "variant": variant, "t gIoU": g, "t gIoU std": s, "seeds": n}
                  for label, variant, g, s, n in rows]).to_csv(path, index=False)
    return path


def test_claim_reads_the_larger_standard_deviation_of_the_two_rows(tmp_path):
    from rise.config import PROJECT_ROOT, load_settings
    from rise.toy.claim import check_claim

    variants = load_settings(PROJECT_ROOT / "params.yaml", preset="toy").variants
    table = _claim_table(tmp_path / "t.csv", [("Base", "zeroshot_3b", 38.0, None, 1),
                                              ("Format-only", "format_only_3b", 42.0, 3.0, 3),
                                              ("Full", "full_3b", 49.0, 1.0, 3)])
    by_ref = {r["against"]: r for r in check_claim(table, variants)}
    assert set(by_ref) == {"Base", "Format-only"}  # Format-only itself is a reference, not an R_sem row
    assert by_ref["Base"]["std"] == 1.0 and by_ref["Base"]["met"]  # 11 over Full's own std
    fo = by_ref["Format-only"]
    assert fo["gap"] == 7.0 and fo["std"] == 3.0 and fo["gap_in_std"] == pytest.approx(2.33, abs=0.01)
    assert fo["met"] and not check_claim(table, variants, margin=2.5)[1]["met"]
    assert fo["gap_in_pooled_std"] == pytest.approx(7 / (5 ** 0.5), abs=0.01)


def test_claim_entry_fails_when_a_row_misses_the_bar_and_names_an_unknown_variant(tmp_path):
    import subprocess
    import sys

    from rise.config import PROJECT_ROOT

    def run(table):
        return subprocess.run([sys.executable, "-m", "rise.toy", "--params", str(PROJECT_ROOT / "params.yaml"),
                               "claim", str(table)], capture_output=True, text=True)

    close = _claim_table(tmp_path / "close.csv", [("Format-only", "format_only_3b", 42.0, 3.8, 3),
                                                 ("Full", "full_3b", 48.6, 0.9, 3)])
    proc = run(close)
    assert proc.returncode == 1 and "| Full | Format-only | t | +6.60 | 3.80 | 1.74 |" in proc.stdout
    unknown = _claim_table(tmp_path / "unknown.csv", [("X", "nosuch_3b", 1.0, 0.1, 3)])
    proc = run(unknown)
    assert proc.returncode == 2 and "nosuch_3b" in proc.stderr and "params.yaml" in proc.stderr
