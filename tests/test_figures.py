"""Figures that read at a glance: fixed colours per reward term, the run in the title, integer
steps, the ground truth outlined over the untouched image."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402


def history(terms, steps=3):
    return [{"step": s, "reward": 0.1 * s, "kl": 1e-4 * s, "completions/mean_length": 40.0, "step_time": 2.0,
             **{f"rewards/{t}/mean": 0.05 * s for t in terms}} for s in range(1, steps + 1)]


def reward_colours(fig):
    ax = fig.axes[0]
    return {line.get_label(): mcolors.to_hex(line.get_color()) for line in ax.get_lines()}


def test_each_reward_term_keeps_its_colour_across_variants_and_steps_are_integers():
    from rise.train import REWARD_COLOURS, curves_figure

    full = reward_colours(curves_figure(history(["semantic", "think_format", "seg_format"]), "full_3b, seed 0"))
    no_think = reward_colours(curves_figure(history(["semantic", "seg_format"]), "no_think_format_3b, seed 1"))
    format_only = reward_colours(curves_figure(history(["think_format", "seg_format"])))
    for colours in (full, no_think, format_only):
        for term, colour in colours.items():
            assert colour == mcolors.to_hex(REWARD_COLOURS[term]), (term, colour)
    assert full["seg_format"] == no_think["seg_format"] == format_only["seg_format"]
    fig = curves_figure(history(["semantic"], steps=2), "full_3b, seed 2: GRPO training (demo preset)")
    assert fig._suptitle.get_text() == "full_3b, seed 2: GRPO training (demo preset)"
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_ground_truth_panel_shows_the_untouched_image_with_an_outline(in_demo, monkeypatch, tmp_path):
    """The ground-truth panel draws only the image and the outline (a fill would tint the object:
    'the largest blue shape' looked purple), and each answer's text says whose reasoning it is."""
    import rise.figures
    from rise.contracts import read_jsonl, write_jsonl

    dataset = "reasonseg_val"
    rows = list(read_jsonl(in_demo.layout.dataset_manifest(dataset)))
    answers = [{"sample_id": r["sample_id"], "parse_ok": False, "parse_error": "no answer", "mask": None, "box": None,
                "points": None, "raw_text": "<think>the blue one on the left</think>"} for r in rows]
    variant = "figure_only_3b"  # answers of their own: no other test's predictions are touched
    write_jsonl(in_demo.layout.predictions(variant, dataset), answers)
    figures = []
    monkeypatch.setattr(rise.figures, "save_figure", lambda fig, out, dpi=None: figures.append(fig))
    rise.figures.qualitative_figure(in_demo, [variant], dataset, 1, tmp_path / "q.png")
    truth, answer = figures[0].axes[:2]
    assert len(truth.get_images()) == 1  # the image alone: no mask drawn over it
    assert np.asarray(truth.get_images()[0].get_array()).ndim == 3
    assert truth.collections  # the outline
    assert truth.get_title().startswith("ground truth (outlined):")
    assert answer.get_xlabel().startswith(f"{variant}'s reasoning: the blue one")
