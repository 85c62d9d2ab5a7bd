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


@settings(max_examples=300, deadline=None)
@given(st.text(), st.floats(allow_nan=True), st.floats(allow_nan=True), st.booleans())
def test_parser_never_raises(text, w, h, points):
    a = parse_answer(text, w, h, points=points)
    assert a.ok in (True, False)
    if a.ok:
        assert all(math.isfinite(c) for c in a.box)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 200), st.floats(-1e3, 1e3), st.text(max_size=3), st.none()), max_size=6))
def test_parser_on_arbitrary_bbox_payloads(values):
    a = parse_answer(f"<answer>{{\"bbox\": {values!r}}}</answer>".replace("None", "null"), 100, 100, points=False)
    if a.ok:
        x1, y1, x2, y2 = a.box
        assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 100


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
