"""The `evaluate` stage: predictions + ground truth -> metrics JSON and per-sample CSV."""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from rise.config import Settings
from rise.contracts import atomic_write_text, decode_mask, load_eval_manifest, read_json, read_jsonl, write_json
from rise.errors import DataError
from rise.layout import FINAL
from rise.metrics import intersection_union, summarize

log = logging.getLogger(__name__)


def evaluate(settings: Settings, variant: str, eval_set: str, seed: int | None = None, checkpoint: str = FINAL) -> Path:
    """Metrics of one run of a variant (`seed`, default the first) at one of its checkpoints."""
    layout = settings.layout
    protocol = settings.evaluate["protocol"]
    seed = layout.primary_seed if seed is None else seed
    gts = load_eval_manifest(layout.dataset_manifest(eval_set))
    pred_file = layout.predictions(variant, eval_set, seed, checkpoint)
    preds = {p["sample_id"]: p for p in read_jsonl(pred_file)}
    missing = [g["sample_id"] for g in gts if g["sample_id"] not in preds]
    if missing:
        raise DataError(f"{pred_file} lacks {len(missing)} samples of "
                        f"{layout.dataset_manifest(eval_set)} (first: {missing[0]}); rerun prediction")
    if any(g.get("mask") is None for g in gts):
        raise DataError(f"{layout.dataset_manifest(eval_set)} has samples without a ground-truth mask "
                        f"(a training-only source such as ImageNet); dataset '{eval_set}' cannot be evaluated")
    inters, unions, rows = [], [], []
    for g in gts:
        p = preds[g["sample_id"]]
        gt = decode_mask(g["mask"])
        ignore = decode_mask(g["ignore"]) if g.get("ignore") else None
        pred = decode_mask(p["mask"]) if p["parse_ok"] and p["mask"] else None
        i, u = intersection_union(pred, gt, ignore, protocol)
        inters.append(i)
        unions.append(u)
        rows.append({"sample_id": g["sample_id"], "intersection": i, "union": u,
                     "iou": i / u if u else "", "parse_ok": p["parse_ok"], "parse_error": p["parse_error"] or "",
                     "box": p["box"] or "", "think_chars": p["think_chars"], "kind": g.get("kind", "")})
    metrics = summarize(inters, unions, protocol)
    policy = layout.policy_ref(variant, seed)
    run = read_json(policy) if policy.exists() else {}  # the training run's policy.json
    environments = _environments(settings, variant, eval_set, seed, checkpoint, run)
    metrics["n_failed_parse"] = sum(not preds[g["sample_id"]]["parse_ok"] for g in gts)
    families = family_metrics(rows, protocol)
    record = dict(protocol=protocol, answer=settings.evaluate["answer"], environment=environments,
                  models=_models(run, environments), variant=variant, seed=seed, checkpoint=checkpoint,
                  dataset=eval_set, provenance=settings.provenance())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["sample_id"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(layout.sample_scores(variant, eval_set, seed, checkpoint), buf.getvalue())
    write_json(layout.metrics_provenance(variant, eval_set, seed, checkpoint), record)
    write_json(layout.family_metrics(variant, eval_set, seed, checkpoint), families)
    out = layout.metrics(variant, eval_set, seed, checkpoint)
    write_json(out, metrics)  # numbers alone; what they came from is in the provenance file beside the scores
    log.info("%s seed %d %s/%s: gIoU %.2f cIoU %.2f (%d samples, %d failed parses, protocol %s)", variant, seed,
             checkpoint, eval_set,
             metrics["gIoU"], metrics["cIoU"], metrics["n_samples"], metrics["n_failed_parse"], protocol)
    return out


def family_metrics(rows: list[dict], protocol: str) -> dict:
    """{family: {gIoU, cIoU, n_samples, n_failed_parse}} over the samples of each `kind`, in the order
    the kinds first appear; {} where the samples carry none (real datasets)."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows if r["kind"]):
        mine = [r for r in rows if r["kind"] == kind]
        out[kind] = {**summarize([r["intersection"] for r in mine], [r["union"] for r in mine], protocol),
                     "n_failed_parse": sum(not r["parse_ok"] for r in mine)}
    return out


def _models(run: dict, environments: dict) -> dict:
    """The fingerprints of the weights behind the numbers (rise/fingerprints.py): the policy that
    answered, SAM2, and for a trained policy the base it started from and the CLIP that rewarded it."""
    trained = run.get("fingerprints") or {}
    predicted = (environments.get("predict") or {}).get("models") or {}
    return {"policy": predicted.get("policy"), "base": trained.get("base"), "clip": trained.get("clip"),
            "sam2": predicted.get("sam2")}


def _environments(settings: Settings, variant: str, eval_set: str, seed: int, checkpoint: str, run: dict) -> dict:
    """Where the numbers came from: the training run (its policy.json, `run`), the prediction run
    (masks), this stage."""
    from rise.provenance import environment

    env_file = settings.layout.prediction_environment(variant, eval_set, seed, checkpoint)
    return {"train": run.get("environment"),
            "predict": read_json(env_file) if env_file.exists() else None,
            "evaluate": environment()}
