"""Tables to read: each paper table as Markdown with the paper's number, ours and the difference
side by side (`results/<preset>/<table>.md`, and `rise show` in the terminal), from the CSV that
`rise table` writes (rise/tables.py)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text


def markdown_path(settings: Settings, name: str) -> Path:
    return settings.layout.table(name).with_suffix(".md")


def _number(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def _ours(row, column: str) -> str:
    """The mean over seeds, with the seeds' standard deviation when there are several."""
    std = row.get(f"{column} std")
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return _number(row[column])
    return f"{_number(row[column])} ± {std:.1f}"


def _difference(ours, paper) -> str:
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return "–"
    return f"{ours - paper:+.1f}"


def table_markdown(settings: Settings, name: str) -> str:
    """The table as Markdown: per column the paper's value, ours and ours minus the paper's."""
    table = settings.tables[name]
    df = pd.read_csv(settings.layout.table(name))
    columns = [f"{d} {m}" for d, m in table["columns"]]
    header = ["", *[h for c in columns for h in (f"{c}: paper", "ours", "Δ")], "seeds", "checkpoint"]
    lines = [f"### {name}: {table['caption']} (preset `{settings.preset}`)", "",
             "| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 2) + "|---|"]
    for _, row in df.iterrows():
        cells = [row["label"]]
        for c in columns:
            paper = row.get(f"paper {c}")
            cells += [_number(paper), _ours(row, c), _difference(row[c], paper)]
        cells += [int(row.get("seeds", 1)), row.get("checkpoint", "final")]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    datasets = list(dict.fromkeys(d for d, _ in table["columns"]))
    samples = ", ".join(f"{d}: {int(df[f'{d} samples'].iloc[0])} samples, "
                        f"{df[f'{d} failed parses'].sum():g} failed parses in all rows (per row: mean over its seeds)" for d in datasets)
    lines += ["", f"Protocol {', '.join(sorted(set(df['protocol'])))}; {samples}. Ours: mean ± standard deviation "
              "over the seeds (one seed: the run's value). Policy per row in the CSV beside this file."]
    note = next((n for n in df.get("note", pd.Series(dtype=str)).dropna() if n), "")
    if note:
        lines += ["", f"**{note}**"]
    return "\n".join(lines) + "\n"


def write_markdown(settings: Settings, name: str) -> Path:
    out = markdown_path(settings, name)
    atomic_write_text(out, table_markdown(settings, name))
    return out
