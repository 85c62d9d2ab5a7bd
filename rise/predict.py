"""Prediction: the policy answers, the shared parser reads the answer, frozen SAM2 draws the mask.

Work is written in shards (whole images, atomically); an interrupted run continues with the
first unfinished shard. Samples are grouped by image so SAM2 encodes each distinct image once.
The policy's raw text is kept, so masks and metrics can be recomputed without the policy.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rise.answer import Answer, parse_answer, parse_answer_segzero, think_chars
from rise.config import Settings
from rise.layout import FINAL
from rise.contracts import (PREDICTION_FIELDS, encode_mask, load_eval_manifest, read_json, read_jsonl,
                            write_json, write_jsonl)
from rise.devices import compute_device
from rise.imaging import open_rgb, policy_view, to_original
from rise.errors import DataError, MissingResourceError
from rise.models import check_hub_or_path, load_policy, load_sam2
from rise.prompts import context_tokens, conversation
from rise.fingerprints import weights_fingerprint
from rise.provenance import environment

log = logging.getLogger(__name__)


class Segmenter:
    """Frozen SAM2 prompted with the box and both points as positive clicks (box alone without points)."""

    def __init__(self, predictor, multimask: str = "best_score"):
        self.predictor = predictor
        self.multimask = multimask
        self.image_encodes = 0

    def _precision(self):
        # half precision on GPU (as SAM2's own examples run it); full precision on CPU
        on_gpu = self.predictor.device.type == "cuda"
        return torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()

    def set_image(self, image: np.ndarray) -> None:
        with torch.inference_mode(), self._precision():
            self.predictor.set_image(image)
        self.image_encodes += 1

    def segment(self, box, points=None) -> tuple[np.ndarray, float]:
        with torch.inference_mode(), self._precision():
            return self._segment(box, points)

    def _segment(self, box, points=None) -> tuple[np.ndarray, float]:
        kwargs = {"box": np.asarray(box, dtype=np.float32)}
        if points is not None:
            kwargs.update(point_coords=np.asarray(points, dtype=np.float32), point_labels=np.ones(len(points)))
        multi = self.multimask == "best_score"
        masks, scores, _ = self.predictor.predict(multimask_output=multi, **kwargs)
        best = int(np.argmax(scores)) if multi else 0
        return masks[best].astype(bool), float(scores[best])


def image_shards(rows: list[dict], shard_size: int) -> list[list[dict]]:
    """Consecutive groups of whole images, about shard_size samples each, in a fixed order."""
    by_image: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["image"], r["sample_id"])):
        by_image.setdefault(r["image"], []).append(r)
    shards, current = [], []
    for group in by_image.values():
        current.extend(group)
        if len(current) >= shard_size:
            shards.append(current)
            current = []
    if current:
        shards.append(current)
    return shards


class PolicyRunner:
    def __init__(self, policy_ref: str, setting: str, *, size: int, cot: bool, points: bool, max_new_tokens: int,
                 batch_size: int, device: str, dtype=torch.float32, style: str = "segzero",
                 repetition_penalty: float = 1.0):
        self.model, self.processor = load_policy(policy_ref, setting, dtype=dtype, device=device)
        self.model.eval()
        self.size, self.cot, self.points, self.style = size, cot, points, style
        self.max_new_tokens, self.batch_size, self.device = max_new_tokens, batch_size, device
        self.repetition_penalty = repetition_penalty

    @torch.no_grad()
    def generate(self, rows: list[dict], images: dict[str, object]) -> list[str]:
        texts = []
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            prompts = [self.processor.apply_chat_template(conversation(r["instruction"], cot=self.cot, points=self.points,
                                                                       style=self.style),
                                                          add_generation_prompt=True, tokenize=False) for r in batch]
            inputs = self.processor(text=prompts, images=[images[r["image"]] for r in batch],
                                    padding=True, return_tensors="pt").to(self.device)
            # decoding set here, not inherited from the checkpoint's generation config
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      repetition_penalty=self.repetition_penalty)
            texts += self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return texts


class VLLMRunner(PolicyRunner):
    """Greedy generation with vLLM (GPU only, `predict.backend: vllm`); same prompts as the HF path."""

    def __init__(self, policy_ref: str, setting: str, *, size: int, cot: bool, points: bool, max_new_tokens: int,
                 batch_size: int, device: str, dtype=None, style: str = "segzero",
                 repetition_penalty: float = 1.0):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise MissingResourceError("predict.backend is 'vllm' but vLLM is not installed "
                                       "in this environment (it pins another torch and transformers than this project: "
                                       "give it an environment of its own, or use predict.backend: hf)") from exc
        from transformers import AutoProcessor

        check_hub_or_path(policy_ref, setting)
        self.processor = AutoProcessor.from_pretrained(policy_ref)
        self.llm = LLM(model=policy_ref, dtype="bfloat16", limit_mm_per_prompt={"image": 1}, seed=0,
                       max_model_len=context_tokens(size, max_new_tokens))
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                       repetition_penalty=repetition_penalty)
        self.size, self.cot, self.points, self.style = size, cot, points, style
        self.max_new_tokens, self.batch_size, self.device = max_new_tokens, batch_size, device

    def generate(self, rows: list[dict], images: dict[str, object]) -> list[str]:
        requests = [{"prompt": self.processor.apply_chat_template(
                        conversation(r["instruction"], cot=self.cot, points=self.points, style=self.style),
                        add_generation_prompt=True, tokenize=False),
                     "multi_modal_data": {"image": images[r["image"]]}} for r in rows]
        return [out.outputs[0].text for out in self.llm.generate(requests, self.sampling, use_tqdm=False)]


def answer_reader(protocol: str, size: int, *, points: bool, think: bool):
    """How an answer is read for SAM2 (`evaluate.answer`): Seg-Zero's evaluation extraction, or the
    training parser (`strict`)."""
    if protocol == "segzero":
        return lambda text: parse_answer_segzero(text, points=points, think=think)
    return lambda text: parse_answer(text, size, size, points=points)


def predict_shard(rows, policy: PolicyRunner, segmenter: Segmenter, size: int, points: bool,
                  read_answer=None) -> list[dict]:
    read_answer = read_answer or answer_reader("strict", size, points=points, think=False)
    originals = {path: open_rgb(path) for path in dict.fromkeys(r["image"] for r in rows)}
    views = {path: policy_view(im, size) for path, im in originals.items()}
    texts = policy.generate(rows, views)
    out = []
    current = None
    for r, text in zip(rows, texts):
        ans: Answer = read_answer(text)
        rec = {"sample_id": r["sample_id"], "raw_text": text, "parse_ok": ans.ok, "parse_error": ans.error,
               "box": None, "points": None, "mask": None, "sam_score": None, "think_chars": think_chars(text)}
        if ans.ok:
            w, h = r["width"], r["height"]
            box = to_original(ans.box, size, w, h)
            pts = [to_original(p, size, w, h) for p in ans.points] if ans.points else None
            if current != r["image"]:  # rows are grouped by image: one encode per distinct image
                segmenter.set_image(np.array(originals[r["image"]]))
                current = r["image"]
            mask, score = segmenter.segment(box, pts)
            rec.update(box=box, points=pts, mask=encode_mask(mask), sam_score=score)
        out.append(rec)
    return out


def checkpoint_policy(ref_file: Path, checkpoint: str) -> str:
    """The policy folder of one of a run's checkpoints, as its policy.json lists them."""
    ref = read_json(ref_file)
    kept = ref.get("checkpoints") or {FINAL: ref["policy"]}
    if checkpoint not in kept:
        raise DataError(f"{ref_file}: the run kept no checkpoint '{checkpoint}' (kept: {', '.join(kept)}); "
                        "train.save_steps and max_steps decide which exist (Settings.checkpoints)")
    return kept[checkpoint]


def predict(settings: Settings, variant_name: str, eval_set: str, shard_size: int = 32, seed: int | None = None,
            checkpoint: str = FINAL) -> Path:
    """Predictions of one run of a variant (`seed`, default the first) at one of its checkpoints."""
    layout = settings.layout
    v = settings.variants[variant_name]
    ref_file = layout.policy_ref(variant_name, seed)
    policy_dir = checkpoint_policy(ref_file, checkpoint)
    rows = load_eval_manifest(layout.dataset_manifest(eval_set))
    out = layout.predictions(variant_name, eval_set, seed, checkpoint)
    name = f"{layout.run_name(variant_name, seed)}/{checkpoint}/{eval_set}"
    shard_dir = out.parent / f".{eval_set}.shards"
    shards = image_shards(rows, shard_size)
    done = {i for i in range(len(shards)) if (shard_dir / f"{i:05d}.jsonl").exists()}
    size = settings.image["policy_size"]
    style = settings.datasets[eval_set].get("eval_prompt", "segzero")
    points = v.points and style == "segzero"  # Qwen's grounding prompt asks for a box alone
    reader = answer_reader(settings.evaluate["answer"], size, points=points, think=v.cot and style == "segzero")
    if len(done) < len(shards):
        device = compute_device(settings.preset, settings.device)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        runner = VLLMRunner if settings.predict.backend == "vllm" else PolicyRunner
        policy = runner(policy_dir, f"{ref_file}: checkpoint {checkpoint}", size=size, cot=v.cot,
                              points=points, max_new_tokens=settings.predict.max_new_tokens,
                              batch_size=settings.predict.batch_size, device=device, dtype=dtype,
                              style=style, repetition_penalty=settings.predict.repetition_penalty)
        sam = settings.models["sam2"]
        segmenter = Segmenter(load_sam2(sam["config"], sam["checkpoint"], sam.get("image_size", 1024),
                                        f"presets.{settings.preset}.models.sam2", device=str(device)),
                              settings.predict.multimask)
        if done:
            log.info("%s: resuming, %d of %d shards already done", name, len(done), len(shards))
        with tqdm(total=len(rows), desc=f"predict {name}", unit="sample") as bar:
            bar.update(sum(len(shards[i]) for i in done))
            for i, shard in enumerate(shards):
                if i in done:
                    continue
                write_jsonl(shard_dir / f"{i:05d}.jsonl", predict_shard(shard, policy, segmenter, size, points, reader))
                bar.update(len(shard))
        log.info("%s: %d SAM2 image encodes for %d samples", name, segmenter.image_encodes, len(rows))
    # the environment that produced the masks (after a resumed run: the one that finished it)
    sam2_weights = weights_fingerprint(settings.models["sam2"]["checkpoint"])
    write_json(layout.prediction_environment(variant_name, eval_set, seed, checkpoint),
               {**environment(), "models": {"policy": weights_fingerprint(policy_dir), "sam2": sam2_weights}})
    merged = [rec for i in range(len(shards)) for rec in read_jsonl(shard_dir / f"{i:05d}.jsonl")]
    order = {r["sample_id"]: k for k, r in enumerate(rows)}
    merged.sort(key=lambda rec: order[rec["sample_id"]])
    assert all(set(PREDICTION_FIELDS) <= set(rec) for rec in merged)
    write_jsonl(out, merged)
    shutil.rmtree(shard_dir, ignore_errors=True)
    n_ok = sum(r["parse_ok"] for r in merged)
    log.info("%s: %d predictions, %d parsed -> %s", name, len(merged), n_ok, out)
    return out
