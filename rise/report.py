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


def _difference(ours, paper) -> str:
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return "–"
    return f"{ours - paper:+.1f}"


def table_markdown(settings: Settings, name: str) -> str:
    """The table as Markdown: per column the paper's value, ours and ours minus the paper's."""
    table = settings.tables[name]
    df = pd.read_csv(settings.layout.table(name))
    columns = [f"{d} {m}" for d, m in table["columns"]]
    header = ["", *[h for c in columns for h in (f"{c}: paper", "ours", "Δ")]]
    lines = [f"### {name}: {table['caption']} (preset `{settings.preset}`)", "",
             "| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for _, row in df.iterrows():
        cells = [row["label"]]
        for c in columns:
            paper = row.get(f"paper {c}")
            cells += [_number(paper), _number(row[c]), _difference(row[c], paper)]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    datasets = list(dict.fromkeys(d for d, _ in table["columns"]))
    samples = ", ".join(f"{d}: {int(df[f'{d} samples'].iloc[0])} samples, "
                        f"{int(df[f'{d} failed parses'].sum())} failed parses in all rows" for d in datasets)
    lines += ["", f"Protocol {', '.join(sorted(set(df['protocol'])))}; {samples}. Policy per row in the CSV beside this file."]
    note = next((n for n in df.get("note", pd.Series(dtype=str)).dropna() if n), "")
    if note:
        lines += ["", f"**{note}**"]
    return "\n".join(lines) + "\n"


def write_markdown(settings: Settings, name: str) -> Path:
    out = markdown_path(settings, name)
    atomic_write_text(out, table_markdown(settings, name))
    return out
