"""Tables to read: each paper table as Markdown with the paper's number, ours and the difference
side by side (`results/<preset>/<table>.md`, and `rise show` in the terminal), from the CSV that
`rise table` writes (rise/tables.py)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rise.config import Settings
from rise.contracts import atomic_write_text


SHOW_WIDTH = 100  # the terminal width `rise show` fits, and the written Markdown alike


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


def family_columns(settings: Settings, name: str) -> list[tuple[str, str]]:
    """A table `by_family`'s per-family columns: (CSV column, header), the header marking whether GRPO
    trained any of the table's rows on that family ("trained"), on none ("unseen") or, for class names,
    only on other names than the dataset's ("unseen names"; rise/families.py: family_marks)."""
    from rise.families import family_marks

    table = settings.tables[name]
    if not table.get("by_family"):
        return []
    shown = json.loads(settings.layout.table(name).with_suffix(".json").read_text())
    order = list(pd.read_csv(settings.layout.table(name), nrows=0).columns)  # the table's order of families
    variants = [row["variant"] for row in table["rows"]]
    out = []
    for dataset, metric in table["columns"]:
        families = {f for rec in shown.values() for f in rec.get(dataset, {}).get("families", {})}
        marks = family_marks(settings, variants, dataset)
        out += sorted(((f"{dataset} {f} {metric}", f"{dataset} {f} ({marks.get(f, 'unseen')}) {metric}")
                       for f in families), key=lambda c: order.index(c[0]))
    return out


def _contents(settings: Settings, name: str):
    """What both renderings show: the table's settings, its value columns, per row (label, {column:
    [paper, ours, difference]}, [seeds, checkpoint]), the per-family block ({header: ours} per row
    label, with "GRPO trained on"; empty unless the table is `by_family`) and the paragraphs under it."""
    table = settings.tables[name]
    df = pd.read_csv(settings.layout.table(name))
    columns = [f"{d} {m}" for d, m in table["columns"]]
    rows = []
    for _, row in df.iterrows():
        cells = {}
        for c in columns:
            paper = row.get(f"paper {c}")
            cells[c] = [_number(paper), _ours(row, c), _difference(row[c], paper)]
        rows.append((row["label"], cells, [int(row.get("seeds", 1)), row.get("checkpoint", "final")]))
    by_family = family_columns(settings, name)
    families = {row["label"]: {**{header: _ours(row, column) for column, header in by_family},
                               "GRPO trained on": row.get("GRPO trained on") if isinstance(row.get("GRPO trained on"), str)
                               else "(not trained)"}
                for _, row in df.iterrows()} if by_family else {}
    datasets = list(dict.fromkeys(d for d, _ in table["columns"]))
    failed = "; ".join(f"{d}: {int(df[f'{d} samples'].iloc[0])} samples, failed parses per row (mean over its "
                       f"seeds): " + ", ".join(f"{x:g}" for x in df[f"{d} failed parses"]) for d in datasets)
    prose = [f"Protocol {', '.join(sorted(set(df['protocol'])))}; {failed}. Ours: mean ± standard deviation "
             "over the seeds (one seed: the run's value). Policy per row in the CSV beside this file."]
    if by_family:
        prose.append("Per instruction family (ours): a family is marked trained where GRPO's training set of "
                     "some row holds it, unseen where none does (unseen names: class names, none of them among "
                     "those GRPO trained on); each row says what it was trained on.")
    note = next((n for n in df.get("note", pd.Series(dtype=str)).dropna() if n), "")
    if note:
        prose.append(f"**{note}**")
    return table, columns, rows, families, prose


def _fit(columns: list, render, width: int | None) -> list[list]:
    """Columns grouped greedily so that each group's rendered lines fit `width` (None: one group)."""
    if not width:
        return [columns]
    groups, current = [], []
    for c in columns:
        if current and max(map(len, render(current + [c], c == columns[-1]))) > width:
            groups.append(current)
            current = []
        current.append(c)
    return groups + [current]


def table_markdown(settings: Settings, name: str, width: int | None = None) -> str:
    """The table as Markdown: per column the paper's value, ours and ours minus the paper's; then,
    for a table `by_family`, ours per instruction family.
    `width` (a terminal, `rise show`): the columns go in as many tables as it takes for each line to
    fit, the row labels repeated, and the prose is wrapped."""
    import textwrap

    table, columns, rows, families, prose = _contents(settings, name)

    def block(cols: list[str], tail: bool) -> list[str]:
        header = ["", *[h for c in cols for h in (f"{c}: paper", "ours", "Δ")], *(["seeds", "checkpoint"] if tail else [])]
        out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1 - tail) + ("|---|" if tail else "|")]
        for label, cells, rest in rows:
            out.append("| " + " | ".join(str(x) for x in [label, *[v for c in cols for v in cells[c]],
                                                                   *(rest if tail else [])]) + " |")
        return out

    def family_block(cols: list[str], tail: bool) -> list[str]:
        out = ["| " + " | ".join(["", *cols]) + " |", "|---" + "|---:" * (len(cols) - tail) + ("|---|" if tail else "|")]
        return out + ["| " + " | ".join([label, *(cells[c] for c in cols)]) + " |" for label, cells in families.items()]

    lines = [f"### {name}: {table['caption']} (preset `{settings.preset}`)"]
    for i, cols in enumerate(groups := _fit(columns, block, width)):
        lines += ["", *block(cols, i == len(groups) - 1)]
    if families:
        headers = list(next(iter(families.values())))
        for i, cols in enumerate(groups := _fit(headers, family_block, width)):
            lines += ["", *family_block(cols, i == len(groups) - 1)]
    for text in prose:
        lines += ["", *(textwrap.wrap(text, width) if width else [text])]
    return "\n".join(lines) + "\n"


def table_html(settings: Settings, name: str) -> str:
    """The table as an HTML page (what the Snakemake report shows): the Markdown's cells, one table
    (and the per-family one below it)."""
    import html

    table, columns, rows, families, prose = _contents(settings, name)
    header = pd.MultiIndex.from_tuples([(c, h) for c in columns for h in ("paper", "ours", "Δ")]
                                       + [("", "seeds"), ("", "checkpoint")])
    shown = pd.DataFrame([[v for c in columns for v in cells[c]] + rest for _, cells, rest in rows],
                         index=[label for label, _, _ in rows], columns=header)
    per_family = pd.DataFrame.from_dict(families, orient="index").to_html(border=1) if families else ""
    paragraphs = "".join(f"<p>{html.escape(p).replace('**', '')}</p>" for p in prose)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{name}</title><style>"
            "body{font-family:sans-serif} table{border-collapse:collapse} td,th{padding:2px 8px;text-align:right}"
            "</style></head><body>"
            f"<h3>{html.escape(name)}: {html.escape(table['caption'])} (preset {html.escape(settings.preset)})</h3>"
            f"{shown.to_html(border=1)}{per_family}{paragraphs}</body></html>\n")


def write_markdown(settings: Settings, name: str) -> Path:
    """`rise show --write`: the Markdown, and the HTML page beside it."""
    out = markdown_path(settings, name)
    atomic_write_text(out, table_markdown(settings, name, width=SHOW_WIDTH))
    atomic_write_text(out.with_suffix(".html"), table_html(settings, name))
    return out


def frame_markdown(df) -> str:
    """A pandas DataFrame as a Markdown table (floats to 4 significant digits)."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|---" * len(df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
