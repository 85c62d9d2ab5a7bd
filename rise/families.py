"""Instruction families: the `kind` a dataset's samples carry (the toy's classname, colour, shape;
the demo's attribute, spatial, ...), which of them GRPO trained a variant on, and which a dataset
shows. Tables by family (rise/tables.py) and their rendering (rise/report.py) read them here."""
from __future__ import annotations

from rise.config import Settings


def families_of(settings: Settings, dataset: str, per_run: list[dict]) -> list[str]:
    """The instruction families a dataset's samples carry: in the order its entry lists them
    (`families`, `kinds`), then any other found in the runs' per-family metrics."""
    spec = settings.datasets[dataset]
    found = [f for run in per_run for f in run]
    return list(dict.fromkeys([f for f in spec.get("families", spec.get("kinds", [])) if f in found] + found))


def trained_families(settings: Settings, variant: str) -> list[str]:
    """The instruction families of the samples GRPO trained the variant on ([] for a real dataset,
    whose instructions carry no family, and for an untrained variant)."""
    v = settings.variants[variant]
    if not v.train:
        return []
    spec = settings.datasets[settings.train_sets[v.train_set]["dataset"]]
    return list(spec.get("families", spec.get("kinds", [])))


def grpo_trained_on(settings: Settings, variant: str) -> str:
    """'refcocog_train: classname' (dataset: families; a toy split of the class names follows in
    parentheses), the dataset alone where it has no families, '' for a variant GRPO never trained."""
    v = settings.variants[variant]
    if not v.train:
        return ""
    dataset = settings.train_sets[v.train_set]["dataset"]
    families = trained_families(settings, variant)
    names = settings.datasets[dataset].get("names")  # a toy split of the class names
    named = f" (names: {', '.join(names)})" if names and "classname" in families else ""
    return f"{dataset}: {', '.join(families)}{named}" if families else dataset


def family_marks(settings: Settings, variants: list[str], dataset: str) -> dict[str, str]:
    """Per instruction family of a dataset: 'trained' where GRPO trained some of the variants on it,
    'unseen' where none, and 'unseen names' for class names GRPO trained on, all of them other names
    than the dataset's (a toy split of the class names, `names`)."""
    trained: dict[str, set | None] = {}  # family -> the class names trained on (None: every one)
    for variant in variants:
        v = settings.variants[variant]
        names = settings.datasets[settings.train_sets[v.train_set]["dataset"]].get("names") if v.train else None
        for f in trained_families(settings, variant):
            was = trained.get(f, set())
            trained[f] = None if was is None or names is None or f != "classname" else was | set(names)
    spec = settings.datasets[dataset]
    shown = spec.get("names")
    marks = {}
    for f in spec.get("families", spec.get("kinds", [])):
        if f not in trained:
            marks[f] = "unseen"
        elif f == "classname" and shown and trained[f] is not None and not set(shown) & trained[f]:
            marks[f] = "unseen names"
        else:
            marks[f] = "trained"
    return marks
