"""The toy world (rise/data/toy_world.py): seeded scenes, unambiguous instructions, the answer format."""
import random

import numpy as np
import pytest

from rise.answer import parse_answer
from rise.data import toy_world as world
from rise.data.toy_world import SIZE, answer_points, answer_text, instructions, make_scene, scenes, write_split


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


def test_a_split_of_the_class_names_names_those_alone_and_leaves_the_other_families_as_they_were(tmp_path):
    from rise.data.toy_world import CLASS_NAMES

    names = sorted(CLASS_NAMES.values())
    half = names[: len(names) // 2]
    every = write_split("toyset", "test", 40, ["colour", "classname"], tmp_path, seed=0)
    some = write_split("toyset", "test", 40, ["colour", "classname"], tmp_path, seed=0, names=half)
    named = [r["instruction"].removeprefix("the ") for r in some if r["kind"] == "classname"]
    assert named and set(named) <= set(half)
    assert [r for r in every if r["kind"] == "colour"] == [r for r in some if r["kind"] == "colour"]
    assert len(named) < sum(r["kind"] == "classname" for r in every)


# --------------------------------------------------------------------------------------------- CLIP
