"""A local copy of a Hugging Face dataset: parquet files or a `datasets.save_to_disk` folder.

Spec fields: `path` (a .parquet file, a folder of them such as a Hub snapshot with
data/<split>-00000-of-00001.parquet, or a save_to_disk folder), optional `split`, optional
`text_index` (which text when `text` holds a list; default 0).

Two column schemas are understood:
  evaluation  image, mask (bool HxW), text, image_id, ann_id, img_height, img_width  (the paper group's
              ReasonSeg_val/test, refcoco_testA, refcocoplus_testA, refcocog_test)
  Seg-Zero    id, problem, solution, image, img_height, img_width  (refCOCOg_2k_840, a training set)
Seg-Zero rows carry no mask: they get `mask: null`, which only a training pool may have (the
evaluation stage needs a mask). Their `problem` is the referring expression, or a whole prompt, from
which the quoted part of "Please find '...'" is taken. Their images are stored at 840x840, so the
rows' height and width are those of the stored image (img_height/img_width of the original are kept
in source_id).

The tables are read with pyarrow directly (no `datasets` cache is written). Embedded images are
written out as PNG files under `image_dir` (PNG bytes are copied as they are; other formats are
decoded once and saved losslessly), named by image id, so one image shared by several rows is
written once.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from rise.contracts import encode_mask
from rise.errors import ConfigError, DataError, MissingResourceError

log = logging.getLogger(__name__)

EVAL_COLUMNS = ("image", "mask", "text", "img_height", "img_width")
SEGZERO_COLUMNS = ("id", "problem", "image", "img_height", "img_width")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SEGZERO_QUESTION = (re.compile(r"Please find '(.+)' with bbox and points", re.S),
                     re.compile(r"Please find '(.+?)'(?=[\s.,;:]|$)", re.S))


@dataclass
class HFTable:
    """One split of a local HF dataset: its files, format, split name and schema."""

    files: list[Path]
    fmt: str  # "parquet" | "arrow" (save_to_disk writes Arrow IPC streams)
    split: str
    columns: list[str]
    num_rows: int

    def batches(self, batch_rows: int = 32) -> Iterator:
        import pyarrow as pa
        import pyarrow.parquet as pq

        """(file, record batch) pairs in file order; small batches keep the decoded images few."""
        for file in self.files:
            if self.fmt == "parquet":
                for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows):
                    yield file, batch
            else:
                with pa.memory_map(str(file)) as source:
                    for batch in pa.ipc.open_stream(source):
                        for start in range(0, batch.num_rows, batch_rows):
                            yield file, batch.slice(start, batch_rows)

    @property
    def schema_kind(self) -> str:
        if all(c in self.columns for c in EVAL_COLUMNS):
            return "evaluation"
        if all(c in self.columns for c in SEGZERO_COLUMNS):
            return "segzero"
        raise DataError(f"{self.files[0]}: columns {self.columns} match neither the evaluation schema "
                        f"{list(EVAL_COLUMNS)} nor the Seg-Zero training schema {list(SEGZERO_COLUMNS)}")


def _split_of_parquet(file: Path, root: Path) -> str | None:
    """The split a Hub-layout parquet file belongs to: data/<split>-00000-of-00001.parquet or <split>/x.parquet."""
    stem = file.name.removesuffix(".parquet")
    match = re.match(r"(.+?)-\d{5}-of-\d{5}$", stem)
    if match:
        return match.group(1)
    parent = file.parent.relative_to(root).parts if file.parent != root else ()
    if parent and parent[-1] not in ("data",):
        return parent[-1]
    return stem


def _arrow_split(folder: Path, split: str | None) -> HFTable:
    """One save_to_disk Dataset folder; `split` None takes the split name recorded in its state.json."""
    import pyarrow as pa

    state_file = folder / "state.json"
    try:
        state = json.loads(state_file.read_text())
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{state_file} cannot be read ({exc}); expected the state.json of "
                        "datasets.save_to_disk") from exc
    split = split or state.get("_split") or folder.name
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise MissingResourceError(f"{missing[0]} does not exist (listed in {state_file})")
    num_rows, columns = 0, None
    for file in files:
        with pa.memory_map(str(file)) as source:
            reader = pa.ipc.open_stream(source)
            columns = columns or reader.schema.names
            num_rows += sum(b.num_rows for b in reader)
    return HFTable(files, "arrow", split, list(columns or []), num_rows)


def looks_like_hub_id(ref: str) -> bool:
    return ref.count("/") == 1 and not ref.startswith((".", "/", "~")) and not ref.endswith(".parquet")


def hub_snapshot(repo_id: str, setting: str) -> Path:
    """The local snapshot of a Hub dataset: from the cache, or downloaded when the hub is reachable."""
    import os

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=offline,
                                      allow_patterns=["*.parquet", "*.json", "*.arrow"]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise MissingResourceError(
            f"{setting}.path: '{repo_id}' is not a local path and the Hub dataset is not in the local cache"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {type(exc).__name__}. Download it where the Hub "
            f"is reachable (`huggingface-cli download --repo-type dataset {repo_id}`) or point "
            f"{setting}.path at a local copy.") from exc


def open_hf(spec: dict, setting: str = "hf dataset") -> HFTable:
    """Finds the split's files under spec['path'] without reading the rows."""
    import pyarrow.parquet as pq

    if spec.get("path") in (None, ""):
        raise ConfigError(f"{setting}.path is not set (a .parquet file, a folder of them, or a save_to_disk folder)")
    path = Path(spec["path"])
    wanted = spec.get("split")
    if not path.exists() and looks_like_hub_id(spec["path"]):
        path = hub_snapshot(spec["path"], setting)
    if not path.exists():
        raise MissingResourceError(f"{setting}.path: {path} does not exist (expected parquet files or a "
                                   "datasets.save_to_disk folder)")
    if path.is_dir() and (path / "dataset_dict.json").is_file():  # save_to_disk of a DatasetDict
        try:
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path / 'dataset_dict.json'} cannot be read ({exc})") from exc
        if wanted is None and len(splits) != 1:
            raise ConfigError(f"{setting}.split is not set and {path} holds splits {splits}; name one")
        split = wanted if wanted is not None else splits[0]
        if split not in splits:
            raise DataError(f"{path} has no split '{split}' (splits: {splits})")
        return _arrow_split(path / split, split)
    if path.is_dir() and (path / "state.json").is_file():  # save_to_disk of one Dataset
        return _arrow_split(path, wanted)
    if path.is_file():
        if path.suffix != ".parquet":
            raise DataError(f"{setting}.path: {path} is not a .parquet file (expected parquet files or a "
                            "datasets.save_to_disk folder)")
        files = [path]
        split = wanted or _split_of_parquet(path, path.parent)
    else:
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise DataError(f"{setting}.path: {path} holds no .parquet files, state.json or dataset_dict.json "
                            "(expected a Hub snapshot with parquet files or a datasets.save_to_disk folder)")
        by_split: dict[str, list[Path]] = {}
        for file in files:
            by_split.setdefault(_split_of_parquet(file, path), []).append(file)
        if wanted is None:
            if len(by_split) > 1:
                raise ConfigError(f"{setting}.split is not set and {path} holds splits {sorted(by_split)}; name one")
            split = next(iter(by_split))
        elif wanted in by_split:
            split = wanted
        else:
            raise DataError(f"{path} has no parquet files of split '{wanted}' (splits found: {sorted(by_split)})")
        files = by_split[split]
    try:
        metas = [pq.ParquetFile(f) for f in files]
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{files[0]} is not a readable parquet file ({exc})") from exc
    return HFTable(files, "parquet", split, list(metas[0].schema_arrow.names),
                   sum(m.metadata.num_rows for m in metas))


# --------------------------------------------------------------------------------------------- cells

def _mask_array(cell, where: str) -> np.ndarray:
    """A mask cell as a bool array: nested lists (list<list<bool>>), an image (struct of bytes/path or
    bytes), or anything numpy can read."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from PIL import Image

    if isinstance(cell, pa.ExtensionScalar):  # datasets' Array2D
        cell = cell.value
    if isinstance(cell, (pa.ListScalar, pa.LargeListScalar, pa.FixedSizeListScalar)) and cell.is_valid:
        rows = cell.values
        if pa.types.is_list(rows.type) or pa.types.is_large_list(rows.type) or pa.types.is_fixed_size_list(rows.type):
            lengths = pc.list_value_length(rows).to_numpy(zero_copy_only=False)
            if len(lengths) == 0 or (lengths != lengths[0]).any():
                raise DataError(f"{where}: mask is empty or its rows have different lengths")
            values = rows.flatten().to_numpy(zero_copy_only=False)
            return values.reshape(len(lengths), int(lengths[0])) > 0
    value = cell.as_py() if isinstance(cell, pa.Scalar) else cell
    if value is None:
        raise DataError(f"{where}: mask is missing")
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, str)):
        try:
            with Image.open(io.BytesIO(value) if isinstance(value, bytes) else value) as im:
                value = np.asarray(im.convert("L"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{where}: mask image cannot be read ({exc})") from exc
    array = np.asarray(value)
    if array.ndim != 2:
        raise DataError(f"{where}: mask has shape {array.shape}; expected height x width")
    return array > 0


def _image_payload(cell, base: Path) -> tuple[bytes | None, str | None]:
    """(embedded bytes, external path) of an image cell: HF's struct {bytes, path} or raw bytes."""
    value = cell.as_py() if hasattr(cell, "as_py") else cell
    if isinstance(value, bytes):
        return value, None
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"], None
        if value.get("path"):
            path = Path(value["path"])
            return None, str(path if path.is_absolute() or path.exists() else base / path)
    return None, None


def _safe_name(image_id: str) -> str:
    """A file stem from an image id ("COCO_train2014_000000000009.jpg" -> "COCO_train2014_000000000009")."""
    stem = re.sub(r"\.(jpe?g|png|bmp|webp)$", "", image_id, flags=re.I)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


class _ImageWriter:
    """Writes embedded images as PNG files, once per image, with stable names."""

    def __init__(self, image_dir: Path):
        self.image_dir = Path(image_dir)
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self.written: dict[str, tuple[str, tuple[int, int]]] = {}  # stem -> (digest, (width, height))

    def write(self, data: bytes, name: str) -> tuple[str, tuple[int, int]]:
        """Path and (width, height) of the PNG holding `data`; raises OSError/ValueError if not an image."""
        from PIL import Image

        digest = hashlib.sha1(data).hexdigest()
        stem = _safe_name(name)
        if stem in self.written and self.written[stem][0] != digest:  # two different images under one id
            stem = f"{stem}_{digest[:10]}"
        target = self.image_dir / f"{stem}.png"
        if stem in self.written:  # the same image again (several expressions on one image)
            return str(target), self.written[stem][1]
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes: an unreadable image fails here, before anything is written
            size = im.size
            if data.startswith(PNG_MAGIC):
                payload = data
            else:
                # PNG holds these modes as they are; others (CMYK JPEGs) become RGB, as open_rgb would make them
                keep = im if im.mode in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA") else im.convert("RGB")
                buffer = io.BytesIO()
                keep.save(buffer, format="PNG", compress_level=1)  # lossless; the level trades size for time
                payload = buffer.getvalue()
        fd, tmp = tempfile.mkstemp(dir=self.image_dir, prefix=f".{stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, target)
        self.written[stem] = (digest, size)
        return str(target), size


def segzero_instruction(problem: str) -> str:
    """The referring expression inside a Seg-Zero `problem` (the whole prompt or the bare expression)."""
    for pattern in _SEGZERO_QUESTION:
        match = pattern.search(problem)
        if match:
            return match.group(1).strip()
    return problem.strip()


def _text(value, text_index: int, where: str) -> str:
    if isinstance(value, list):
        if not value:
            raise DataError(f"{where}: text is an empty list")
        if text_index >= len(value):
            raise DataError(f"{where}: text has {len(value)} entries; the spec asks for text_index {text_index}")
        value = value[text_index]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: text is {value!r}; expected a non-empty string")
    return value.strip()


# --------------------------------------------------------------------------------------------- loader

def load_hf(spec: dict, *, dataset: str, image_dir: Path, setting: str = "hf dataset",
            skip_unreadable: bool = False, skipped: list[dict] | None = None) -> list[dict]:
    """Manifest rows of a local HF dataset; embedded images are written as PNG under `image_dir`."""
    from PIL import Image

    from rise.data.images import inspect_images, reject_images

    table = open_hf(spec, setting)
    kind = table.schema_kind
    text_index = int(spec.get("text_index", 0))
    base = table.files[0].parent
    writer = _ImageWriter(image_dir)
    problems: dict[str, str] = {}
    samples: dict[str, list[str]] = {}
    rows: list[dict] = []
    index = 0
    for file, batch in table.batches():
        columns = {name: batch.column(name) for name in batch.schema.names}
        for i in range(batch.num_rows):
            where = f"{file} row {index}"
            sample_id = f"{table.split}_{index:06d}"
            if kind == "evaluation":
                image_id = columns["image_id"][i].as_py() if "image_id" in columns else None
                ann_id = columns["ann_id"][i].as_py() if "ann_id" in columns else None
            else:
                image_id, ann_id = columns["id"][i].as_py(), None
            height, width = columns["img_height"][i].as_py(), columns["img_width"][i].as_py()
            data, external = _image_payload(columns["image"][i], base)
            label = f"{where} (image_id {image_id})"
            try:
                if data is not None:
                    image, (w, h) = writer.write(data, str(image_id if image_id is not None else sample_id))
                elif external is not None:
                    found = inspect_images([external])[external]
                    if isinstance(found, str):
                        raise OSError(f"{external} {found}")
                    image, (w, h) = external, found[:2]
                else:
                    raise ValueError("the image cell is empty")
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                if not skip_unreadable:
                    raise DataError(f"{label}: the image cannot be read ({exc}); set skip_unreadable: true in "
                                    "the dataset entry to skip such rows") from exc
                problems[label] = f"cannot be read ({exc})"
                samples[label] = [sample_id]
                index += 1
                continue
            if kind == "evaluation":
                if (w, h) != (width, height):
                    raise DataError(f"{where}: the image is {w}x{h} but img_width x img_height is {width}x{height}")
                mask = _mask_array(columns["mask"][i], where)
                if mask.shape != (h, w):
                    raise DataError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}")
                instruction = _text(columns["text"][i].as_py(), text_index, where)
                row_mask = encode_mask(mask)
                source = f"hf:{Path(spec['path']).name}:{table.split}:{index}:image_id={image_id}:ann_id={ann_id}"
            else:
                instruction = segzero_instruction(columns["problem"][i].as_py() or "")
                if not instruction:
                    raise DataError(f"{where}: problem is empty")
                row_mask = None  # Seg-Zero's training set has no mask: a training pool only
                source = (f"hf:{Path(spec['path']).name}:{table.split}:{index}:id={image_id}"
                          f":original={width}x{height}")
                height, width = h, w
            rows.append({"sample_id": sample_id, "image": image, "instruction": instruction,
                         "height": int(height), "width": int(width), "mask": row_mask, "ignore": None,
                         "dataset": dataset, "split": table.split, "source_id": source})
            index += 1
    reject_images(problems, samples, setting=setting, skip=skip_unreadable, total=index,
                  skipped=skipped if skipped is not None else [], expected="images embedded in the dataset")
    if not rows and not problems:
        raise DataError(f"{setting}: split '{table.split}' of {spec['path']} has no rows")
    log.info("%s: %d rows (%s schema) from %s, images in %s", setting, len(rows), kind, spec["path"], image_dir)
    return rows


def describe_hf(spec: dict, *, setting: str = "hf dataset", skip_unreadable: bool = False) -> dict:
    """Files, split, schema and row count, from the files' metadata (no row is decoded)."""
    table = open_hf(spec, setting)
    kind = table.schema_kind
    if table.num_rows == 0:
        raise DataError(f"{setting}: split '{table.split}' of {spec['path']} has no rows")
    return {"split": table.split, "files": [str(f) for f in table.files], "format": table.fmt,
            "schema": kind, "samples": table.num_rows,
            "image_folder": "embedded (written as PNG under the run's data/images/<dataset> by prepare-data)",
            "mask_source": "column 'mask'" if kind == "evaluation" else "none (Seg-Zero training set: mask null, "
                                                                         "usable as a training pool only)"}


# The loader registry's entries (rise/data/__init__.py).
PATHS = ("path",)


def load(spec: dict, request) -> list[dict]:
    return load_hf(spec, dataset=request.dataset, image_dir=request.image_dir, setting=request.setting,
                   skip_unreadable=request.skip_unreadable, skipped=request.skipped)


def describe(spec: dict, request) -> dict:
    return describe_hf(spec, setting=request.setting, skip_unreadable=request.skip_unreadable)
