import math

from hypothesis import given, settings, strategies as st

from rise.answer import has_think_format, parse_answer, think_chars

GOOD = "<think>red is left</think><answer>{'bbox': [10,20,60,80], 'points_1': [30,40], 'points_2': [35,50]}</answer>"


def test_valid_answer_with_single_quotes():
    a = parse_answer(GOOD, 100, 100)
    assert a.ok and a.box == (10, 20, 60, 80) and a.points == ((30, 40), (35, 50))


def test_double_quotes_and_floats():
    a = parse_answer('<answer>{"bbox": [1.5, 2, 3.5, 4], "points_1": [2, 3], "points_2": [3, 3]}</answer>', 10, 10)
    assert a.ok and a.box == (1.5, 2, 3.5, 4)


def test_box_only_mode():
    assert parse_answer("<answer>{'bbox': [1,2,3,4]}</answer>", 10, 10, points=False).ok
    assert parse_answer("<answer>{'bbox': [1,2,3,4]}</answer>", 10, 10).error.startswith("points_1")


def test_invalid_boxes():
    cases = {
        "<answer>{'bbox': [5,2,3,4], 'points_1': [1,1], 'points_2': [1,1]}</answer>": "bbox not ordered",
        "<answer>{'bbox': [1,2,300,4], 'points_1': [1,1], 'points_2': [1,1]}</answer>": "outside",
        "<answer>{'bbox': [1,2,3], 'points_1': [1,1], 'points_2': [1,1]}</answer>": "bbox missing",
        "<answer>{'bbox': [1,2,true,4], 'points_1': [1,1], 'points_2': [1,1]}</answer>": "bbox missing",
        "<answer>{'bbox': [1,2,3,4], 'points_1': [1,1], 'points_2': [1,99]}</answer>": "points_2 outside",
        "<answer>no json here</answer>": "no JSON",
        "<answer>{bbox: nope}</answer>": "not a JSON object",
    }
    for text, reason in cases.items():
        a = parse_answer(text, 10, 10)
        assert not a.ok and reason in a.error, (text, a)


def test_nan_and_infinity_are_invalid():
    assert not parse_answer('{"bbox": [NaN, 1, 2, 3]}', 10, 10, points=False).ok
    assert not parse_answer('{"bbox": [0, 1, Infinity, 3]}', 10, 10, points=False).ok


def test_think_format():
    assert has_think_format(GOOD)
    assert has_think_format("  " + GOOD + "\n")
    assert not has_think_format("<answer>{}</answer>")
    assert not has_think_format(GOOD + " trailing")
    assert think_chars(GOOD) == len("red is left")


# Every reason the parser gives for a refusal; "parser failure: ..." (its own crash, swallowed) is not one.
REASONS = ("output is not text", "no JSON object in the answer", "answer is not a JSON object",
           "bbox missing or not 4 finite numbers", "bbox not ordered or outside the image",
           "points_1 missing or not 2 finite numbers", "points_2 missing or not 2 finite numbers",
           "points_1 outside the image", "points_2 outside the image")


@settings(max_examples=300, deadline=None)
@given(st.text(), st.floats(allow_nan=True), st.floats(allow_nan=True), st.booleans())
def test_parser_never_raises(text, w, h, points):
    a = parse_answer(text, w, h, points=points)
    if a.ok:
        assert all(math.isfinite(c) for c in a.box) and a.error is None
    else:
        assert a.error in REASONS, a.error  # a reason of its own, not a swallowed exception


def coordinate(limit):
    return st.one_of(st.integers(0, int(limit)), st.floats(0, limit, allow_nan=False).map(lambda v: round(v, 2)))


@st.composite
def well_formed_answers(draw):
    w, h = draw(st.integers(2, 2000)), draw(st.integers(2, 2000))
    xs = sorted(draw(st.lists(coordinate(w), min_size=2, max_size=2, unique=True)))
    ys = sorted(draw(st.lists(coordinate(h), min_size=2, max_size=2, unique=True)))
    pts = [(draw(coordinate(w)), draw(coordinate(h))) for _ in range(2)]
    quote = draw(st.sampled_from(["'", '"']))
    key = draw(st.sampled_from(["bbox", "bbox_2d"]))
    body = ", ".join([f"{quote}{key}{quote}: [{xs[0]}, {ys[0]}, {xs[1]}, {ys[1]}]"] +
                     [f"{quote}points_{i + 1}{quote}: [{p[0]}, {p[1]}]" for i, p in enumerate(pts)])
    think = draw(st.text(st.characters(blacklist_characters="{}<>"), max_size=40))
    text = f"<think>{think}</think><answer>{{{body}}}</answer>"
    return text, w, h, (xs[0], ys[0], xs[1], ys[1]), tuple(pts)


@settings(max_examples=300, deadline=None)
@given(well_formed_answers())
def test_well_formed_answers_parse_exactly(case):
    text, w, h, box, pts = case
    a = parse_answer(text, w, h)
    assert a.ok and a.error is None, a.error
    assert a.box == box and a.points == pts
    b = parse_answer(text, w, h, points=False)
    assert b.ok and b.box == box and b.points is None


def _valid_box(values, w, h) -> bool:
    if len(values) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    x1, y1, x2, y2 = values
    return 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 200), st.floats(-1e3, 1e3), st.text(max_size=3), st.none()), max_size=6))
def test_parser_on_arbitrary_bbox_payloads(values):
    a = parse_answer(f"<answer>{{\"bbox\": {values!r}}}</answer>".replace("None", "null"), 100, 100, points=False)
    if _valid_box(values, 100, 100):
        assert a.ok and a.box == tuple(values)
    else:
        assert not a.ok and a.error in REASONS, (values, a.error)


def test_zero_area_box_is_refused():
    for box in ([5, 2, 5, 8], [1, 4, 6, 4], [3, 3, 3, 3]):
        for points in (True, False):
            text = f"<answer>{{'bbox': {box}, 'points_1': [1,1], 'points_2': [1,1]}}</answer>"
            a = parse_answer(text, 10, 10, points=points)
            assert not a.ok and a.error == "bbox not ordered or outside the image", (box, a)
    assert parse_answer("<answer>{'bbox': [5,2,5.5,8]}</answer>", 10, 10, points=False).ok  # thin, not empty


def test_json_outside_the_answer_block_is_not_the_answer():
    decoy = "{'bbox': [0,0,1,1], 'points_1': [0,0], 'points_2': [1,1]}"
    a = parse_answer(f"<think>at first {decoy}, then</think>" + GOOD.split("</think>")[1], 100, 100)
    assert a.ok and a.box == (10, 20, 60, 80) and a.points == ((30, 40), (35, 50))
    after = parse_answer(GOOD + " " + decoy, 100, 100)
    assert after.ok and after.box == (10, 20, 60, 80)
    only_outside = parse_answer(f"<think>{decoy}</think><answer>the left one</answer>", 100, 100)
    assert not only_outside.ok and only_outside.error == "no JSON object in the answer"
    no_block = parse_answer(f"I think {decoy}", 100, 100)  # no answer block: searched anywhere, as Seg-Zero
    assert no_block.ok and no_block.box == (0, 0, 1, 1)


def test_qwen_grounding_answer():
    from rise.prompts import conversation

    text = '```json\n[{"bbox_2d": [12, 30, 80, 96], "label": "the red circle"}]\n```'
    a = parse_answer(text, 112, 112, points=False)
    assert a.ok and a.box == (12, 30, 80, 96) and a.points is None
    prompt = conversation("The red circle.", style="qwen_grounding")[0]["content"][1]["text"]
    assert prompt == "Locate the red circle, output its bbox coordinates using JSON format."


def test_segzero_prompt_wording():
    from rise.prompts import build_prompt

    assert build_prompt("The Red circle.") == (
        "Please find 'the red circle' with bbox and points."
        "Compare the difference between objects and find the most closely matched one."
        "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
        "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
        "i.e., <think> thinking process here </think>"
        "<answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>")
    no_cot = build_prompt("x", cot=False)
    assert "<think>" not in no_cot and "<answer>" in no_cot
    no_points = build_prompt("x", points=False)
    assert "points_1" not in no_points and "'bbox'" in no_points
