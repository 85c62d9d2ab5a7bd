"""Where each stage reads and writes, relative to the project root: one method per kind of file.
rise/contracts.py describes what each file holds (its catalogue is tested against these paths)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FINAL = "final"  # the checkpoint a training run ends with; the others are `step<N>` (rise/sweep.py)


@dataclass
class Layout:
    """Where each stage reads and writes; relative to the project root. See rise/contracts.py.

    A trained variant is run once per seed (`train.seeds`); a run's files lie under
    `<variant>/seed<k>/`, and its predictions and metrics under `<variant>/seed<k>/<checkpoint>/`
    (`final`, or `step<N>` for a checkpoint sweep). `seed=None` means the first seed."""

    preset: str
    root: Path = field(default_factory=lambda: Path("."))
    primary_seed: int = 0

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.preset

    def run_name(self, variant: str, seed: int | None) -> Path:
        return Path(variant) / f"seed{self.primary_seed if seed is None else seed}"

    def models_dir(self) -> Path:
        return self.run_dir / "models"

    def models_manifest(self) -> Path:
        return self.models_dir() / "models.json"

    def dataset_manifest(self, dataset: str) -> Path:
        return self.run_dir / "data" / f"{dataset}.jsonl"

    def dataset_images(self, dataset: str) -> Path:
        return self.run_dir / "data" / "images" / dataset

    def train_manifest(self, train_set: str) -> Path:
        return self.run_dir / "train" / f"{train_set}.jsonl"

    def checkpoint_dir(self, variant: str, seed: int | None = None) -> Path:
        return self.run_dir / "checkpoints" / self.run_name(variant, seed)

    def train_curves(self, variant: str, seed: int | None = None) -> Path:
        """Per-step training metrics (CSV, for `dvc plots`); the PNG lies beside it."""
        return self.run_dir / "curves" / f"{variant}-seed{self.primary_seed if seed is None else seed}.csv"

    def policy_ref(self, variant: str, seed: int | None = None) -> Path:
        """The run's policy and its saved checkpoints (rise/train.py writes it when training ends)."""
        return self.checkpoint_dir(variant, seed) / "policy.json"

    def _scored(self, kind: str, variant: str, seed: int | None, checkpoint: str) -> Path:
        return self.run_dir / kind / self.run_name(variant, seed) / checkpoint

    def predictions(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        return self._scored("predictions", variant, seed, checkpoint) / f"{eval_set}.jsonl"

    def prediction_environment(self, variant: str, eval_set: str, seed: int | None = None,
                               checkpoint: str = FINAL) -> Path:
        """The software and GPU that made the predictions' masks (rise/provenance.py)."""
        return self._scored("predictions", variant, seed, checkpoint) / f"{eval_set}.env.json"

    def metrics(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        return self._scored("metrics", variant, seed, checkpoint) / f"{eval_set}.json"

    def sample_scores(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        return self._scored("scores", variant, seed, checkpoint) / f"{eval_set}.samples.csv"

    def metrics_provenance(self, variant: str, eval_set: str, seed: int | None = None,
                           checkpoint: str = FINAL) -> Path:
        """What the metrics file's numbers came from (settings, software, weights): outside
        `metrics/`, which holds numbers alone (`dvc metrics show` lists that folder)."""
        return self._scored("scores", variant, seed, checkpoint) / f"{eval_set}.provenance.json"

    def family_metrics(self, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
        """gIoU/cIoU per instruction family (the samples' `kind`), beside the per-sample scores."""
        return self._scored("scores", variant, seed, checkpoint) / f"{eval_set}.families.json"

    def sweep(self, variant: str) -> Path:
        """gIoU/cIoU of every saved checkpoint of every seed (CSV; the PNG lies beside it)."""
        return self.root / "results" / self.preset / "sweeps" / f"{variant}.csv"

    def figure(self, name: str) -> Path:
        return self.root / "results" / self.preset / "figures" / f"{name}.png"

    def table(self, name: str) -> Path:
        return self.root / "results" / self.preset / f"{name}.csv"

    def draws_table(self, name: str) -> Path:
        """A table over the preset's pretraining draws, one row per draw (rise/toy/draws.py; the
        comparisons, Markdown and JSON lie beside it)."""
        return self.root / "results" / self.preset / "draws" / f"{name}.csv"

    def judges_table(self, name: str) -> Path:
        """A table's R_sem rows against the judge's quality, one row per CLIP (rise/toy/judges.py; the
        figure, Markdown and JSON lie beside it)."""
        return self.root / "results" / self.preset / "judges" / f"{name}.csv"

    def logs(self, stage: str, name: str) -> Path:
        return self.run_dir / "logs" / stage / f"{name}.log"
