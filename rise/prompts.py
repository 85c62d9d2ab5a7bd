"""Prompt templates, selected by a variant's `cot` and `points` switches.

The default is Seg-Zero's single-object prompt (its commit 77f9ea5), which the paper follows:
sentences joined without separators, the question lower-cased with a trailing '.' removed, and
the single-quoted example answer of the original.
"""
from __future__ import annotations

EXAMPLE_WITH_POINTS = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}"
EXAMPLE_BOX_ONLY = "{'bbox': [10,100,200,210]}"


# Qwen2.5-VL's own grounding prompt; the paper evaluates RefCOCO/+/g with "the official prompt
# consistent with that of Qwen2.5VL". The answer is a box (`bbox_2d`) in the pixels of the image
# the model saw, and SAM2 then gets the box alone.
QWEN_GROUNDING = "Locate {q}, output its bbox coordinates using JSON format."
EVAL_PROMPTS = ("segzero", "qwen_grounding")

# Token budget of a prompt's text (system turn, instruction, format request) when sizing a
# generation engine's context: Seg-Zero's prompt is about 120 tokens, the rest is headroom.
PROMPT_TEXT_TOKENS = 256


def context_tokens(policy_size: int, new_tokens: int) -> int:
    """Longest sequence a generation engine must hold: the image's tokens (one per 28x28 patch of
    the policy's square view), the prompt's text and the answer. Set explicitly for vLLM, whose
    default (the model config's 128K) leaves no room for a KV cache beside other models."""
    return (policy_size // 28) ** 2 + PROMPT_TEXT_TOKENS + new_tokens


def question_text(instruction: str) -> str:
    return instruction.strip().lower().rstrip(".")


def build_prompt(instruction: str, *, cot: bool = True, points: bool = True) -> str:
    q = question_text(instruction)
    if points:
        ask = f"Please find '{q}' with bbox and points."
        what = "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
        example = EXAMPLE_WITH_POINTS
    else:
        ask = f"Please find '{q}' with bbox."
        what = "Output the one bbox of the interested object in JSON format."
        example = EXAMPLE_BOX_ONLY
    compare = "Compare the difference between objects and find the most closely matched one."
    if cot:
        tags = "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
        shape = f"i.e., <think> thinking process here </think><answer>{example}</answer>"
    else:
        tags = "Output the final answer in <answer> </answer> tags."
        shape = f"i.e., <answer>{example}</answer>"
    return ask + compare + tags + what + shape


def conversation(instruction: str, *, cot: bool = True, points: bool = True, style: str = "segzero") -> list[dict]:
    """The chat-format prompt (one user turn: the image, then the text)."""
    if style == "qwen_grounding":
        text = QWEN_GROUNDING.format(q=question_text(instruction))
    elif style == "segzero":
        text = build_prompt(instruction, cot=cot, points=points)
    else:
        raise ValueError(f"unknown prompt style '{style}' (known: {EVAL_PROMPTS})")
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
