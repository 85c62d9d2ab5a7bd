"""`rise --preset <preset> cost TARGET...`: the GPU hours a target would take, before anyone books a
cluster, from the jobs it plans and the GPU measurements recorded in benchmarks/measurements.yaml.

Each line names the figures it used and where they were measured. A figure that was never measured
is said to be missing, not guessed; a figure measured at other settings than the preset's (fewer
completion tokens, another policy size) is used and the line says so, with the direction of the
error.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from rise.config import PROJECT_ROOT, Settings
from rise.errors import ConfigError
from rise.plan import table_needs

MEASUREMENTS = PROJECT_ROOT / "benchmarks" / "measurements.yaml"


@dataclass
class Line:
    stage: str
    jobs: int
    gpu_hours: float | None  # None: not measured
    how: str


def _needs(settings: Settings, targets: list[str]):
    needs = []
    for target in targets:
        if target == "all_tables":
            needs += [n for t in settings.tables for n in table_needs(settings, t)]
        elif target in settings.tables:
            needs += table_needs(settings, target)
        else:
            raise ConfigError(f"cost: '{target}' is not a table of preset '{settings.preset}' "
                              f"(known: {sorted(settings.tables)}, or all_tables)")
    return list(dict.fromkeys(needs))


def _samples(settings: Settings, dataset: str) -> int | None:
    """Samples of a dataset, from its prepared manifest (None before `prepare-data`)."""
    manifest = settings.layout.dataset_manifest(dataset)
    if not manifest.exists():
        return None
    with manifest.open() as fh:
        return sum(1 for line in fh if line.strip())


def project(settings: Settings, targets: list[str], measurements: Path = MEASUREMENTS) -> list[Line]:
    figures = yaml.safe_load(Path(measurements).read_text()) or {}
    needs = _needs(settings, targets)
    runs = list(dict.fromkeys((n.variant, n.seed) for n in needs if settings.variants[n.variant].train))
    lines = []
    by_size: dict[str, list] = {}
    for variant, seed in runs:
        by_size.setdefault(settings.variants[variant].policy, []).append((variant, seed))
    tokens = settings.train.max_completion_length
    for size, size_runs in sorted(by_size.items()):
        steps = sum(settings.train_steps(v) for v, _ in size_runs)
        step = (figures.get("train_step") or {}).get(size)
        if not step:
            lines.append(Line(f"train {size}", len(size_runs), None,
                              f"{steps} steps; no measured step time for the {size} policy in {measurements.name}"))
            continue
        hours = steps * step["seconds"] * step["gpus"] / 3600
        caveat = (f"; measured at {step['completion_tokens']} completion tokens where the preset allows {tokens}: "
                  "a lower bound" if step["completion_tokens"] < tokens else "")
        lines.append(Line(f"train {size}", len(size_runs), hours,
                          f"{steps} steps x {step['seconds']} s x {step['gpus']} GPU ({step['gpu']}; {step['source']}){caveat}"))
    if needs:
        per_dataset = Counter(n.dataset for n in needs)
        sam = figures.get("sam2_image")
        known = {d: _samples(settings, d) for d in per_dataset}
        missing = sorted(d for d, k in known.items() if k is None)
        how = (f"{len(needs)} prediction jobs on {', '.join(sorted(per_dataset))}: the policy's generation at "
               f"evaluation is not measured (no figure in {measurements.name})")
        if missing:
            how += f"; sample counts unknown until `rise prepare-data`: {', '.join(missing)}"
        elif sam:
            samples = sum(per_dataset[d] * known[d] for d in per_dataset)
            how += (f"; SAM2 alone: {samples * sam['seconds'] / 3600:.1f} GPU h ({samples} samples x "
                    f"{sam['seconds']} s, {sam['gpu']}; {sam['source']})")
        lines.append(Line("predict", len(needs), None, how))
    return lines


def report(settings: Settings, targets: list[str], measurements: Path = MEASUREMENTS) -> str:
    lines = project(settings, targets, measurements)
    out = [f"GPU hours of {' '.join(targets)} (preset {settings.preset}), from {measurements}:"]
    total = 0.0
    for line in lines:
        figure = f"{line.gpu_hours:8.1f} GPU h" if line.gpu_hours is not None else "     not measured"
        out.append(f"  {line.stage:10s} {line.jobs:4d} jobs {figure}  {line.how}")
        total += line.gpu_hours or 0.0
    complete = all(line.gpu_hours is not None for line in lines)
    out.append(f"  total{'' if complete else ' (at least: some stages are not measured)'}: {total:.1f} GPU hours")
    return "\n".join(out)
