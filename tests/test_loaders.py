"""Real dataset loaders (REFER, HF, ReasonSeg, ImageNet) on small fixtures written in each format."""
import dataclasses
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from rise.config import PROJECT_ROOT, load_settings
from rise.layout import Layout
from rise.contracts import decode_mask, load_eval_manifest, write_jsonl
from rise.data import describe_dataset, load_rows
from rise.data.hf import load_hf, segzero_instruction
from rise.data.imagenet import load_imagenet
from rise.data.reasonseg import load_reasonseg
from rise.data.refer import load_refer
from rise.errors import ConfigError, DataError, MissingResourceError, RiseError
from rise.sampling import sample_pairs


def rect(y0, y1, x0, x1, shape):
    """Boolean mask with rows y0..y1-1 and columns x0..x1-1 set."""
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def save_image(path: Path, width: int, height: int, seed: int = 0, **kwargs) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **kwargs)


def uncompressed_rle(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed counts, by hand: alternating run lengths (zeros first) in column-major order."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return counts


# --------------------------------------------------------------------------------------------- REFER

BLOB = np.zeros((30, 40), dtype=bool)
BLOB[3:9, 20:26] = True
BLOB[9:14, 22:35] = True  # an L shape: not a polygon the loader could have drawn itself
CORNER = np.zeros((24, 32), dtype=bool)
CORNER[0:5, 0:7] = True
CORNER[20:24, 28:32] = True
TRIANGLE = [2.5, 3.0, 29.0, 6.5, 9.0, 21.5]


def write_refer(root: Path) -> dict:
    """REFER fixture: refs(umd).p + instances.json + two images; returns the loader spec."""
    images = root / "images"
    images.mkdir(parents=True)
    save_image(images / "COCO_train2014_000000000001.jpg", 40, 30, seed=1)
    save_image(images / "COCO_train2014_000000000002.png", 32, 24, seed=2)
    compressed = mask_utils.encode(np.asfortranarray(BLOB.astype(np.uint8)))
    instances = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 30, "width": 40},
                   {"id": 2, "file_name": "COCO_train2014_000000000002.png", "height": 24, "width": 32},
                   {"id": 3, "file_name": "COCO_train2014_000000000003.jpg", "height": 10, "width": 10}],
        "annotations": [
            {"id": 101, "image_id": 1, "category_id": 1, "bbox": [5, 4, 10, 8],
             "segmentation": [[5, 4, 15, 4, 15, 12, 5, 12]]},
            {"id": 102, "image_id": 1, "category_id": 2, "bbox": [20, 3, 15, 11],
             "segmentation": {"size": [30, 40], "counts": compressed["counts"].decode("ascii")}},
            {"id": 103, "image_id": 2, "category_id": 3, "bbox": [0, 0, 32, 24], "iscrowd": 1,
             "segmentation": {"size": [24, 32], "counts": uncompressed_rle(CORNER)}},
            {"id": 104, "image_id": 2, "category_id": 1, "bbox": [2, 2, 26, 18],
             "segmentation": [[2, 2, 8, 2, 8, 10, 2, 10], [20, 14, 28, 14, 28, 20, 20, 20]]},
            {"id": 105, "image_id": 2, "category_id": 1, "bbox": [2, 3, 27, 19], "segmentation": [TRIANGLE]},
            {"id": 106, "image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": [[0, 0, 1, 0, 1, 1]]},
        ],
    }
    def sentences(*texts):
        return [{"raw": t.capitalize() + ".", "sent": t, "sent_id": 1000 + len(t), "tokens": t.split()} for t in texts]
    refs = [  # deliberately not in ref_id order
        {"ref_id": 4, "ann_id": 104, "image_id": 2, "category_id": 1, "split": "test",
         "sentences": sentences("two boxes", "the pair", "both squares"), "file_name": "x_4.jpg"},
        {"ref_id": 1, "ann_id": 101, "image_id": 1, "category_id": 1, "split": "test",
         "sentences": sentences("left box", "box on the left"), "file_name": "x_1.jpg"},
        {"ref_id": 2, "ann_id": 102, "image_id": 1, "category_id": 2, "split": "test",
         "sentences": sentences("l shape"), "file_name": "x_2.jpg"},
        {"ref_id": 3, "ann_id": 103, "image_id": 2, "category_id": 3, "split": "test",
         "sentences": sentences("the corners"), "file_name": "x_3.jpg"},
        {"ref_id": 5, "ann_id": 105, "image_id": 2, "category_id": 1, "split": "train",
         "sentences": sentences("triangle"), "file_name": "x_5.jpg"},
    ]
    folder = root / "refer" / "refcocog"
    folder.mkdir(parents=True)
    (folder / "instances.json").write_text(json.dumps(instances))
    with (folder / "refs(umd).p").open("wb") as fh:
        pickle.dump(refs, fh, protocol=2)
    return {"loader": "refer", "root": str(root / "refer"), "dataset": "refcocog", "split_by": "umd",
            "split": "test", "images": str(images)}


def edit_refer(spec: dict, refs=None, instances=None) -> None:
    folder = Path(spec["root"]) / spec["dataset"]
    if refs is not None:
        current = pickle.loads((folder / f"refs({spec['split_by']}).p").read_bytes())
        (folder / f"refs({spec['split_by']}).p").write_bytes(pickle.dumps(refs(current)))
    if instances is not None:
        current = json.loads((folder / "instances.json").read_text())
        (folder / "instances.json").write_text(json.dumps(instances(current)))


@pytest.fixture
def refer_spec(tmp_path):
    return write_refer(tmp_path)


def test_refer_instance_level_rows_and_masks(refer_spec):
    rows = load_refer(refer_spec, dataset="refcocog_test")
    assert [r["sample_id"] for r in rows] == ["ref1", "ref2", "ref3", "ref4"]  # sorted by ref_id
    by_id = {r["sample_id"]: r for r in rows}
    assert by_id["ref1"]["instruction"] == "left box"  # sentence 0, REFER's `sent`
    assert by_id["ref4"]["instruction"] == "two boxes"
    assert (by_id["ref1"]["height"], by_id["ref1"]["width"]) == (30, 40)
    assert by_id["ref1"]["image"].endswith("COCO_train2014_000000000001.jpg")
    assert all(r["dataset"] == "refcocog_test" and r["split"] == "test" and r["ignore"] is None for r in rows)
    assert by_id["ref3"]["source_id"] == "refcocog(umd):ref=3:ann=103:image=2:sent=1011"
    for r in rows:
        assert isinstance(r["mask"]["counts"], str) and r["mask"]["size"] == [r["height"], r["width"]]
    # pycocotools' polygon convention: an integer rectangle covers [x0, x1) x [y0, y1)
    assert np.array_equal(decode_mask(by_id["ref1"]["mask"]), rect(4, 12, 5, 15, (30, 40)))
    # RLE inputs are exact, compressed and uncompressed
    assert np.array_equal(decode_mask(by_id["ref2"]["mask"]), BLOB)
    assert np.array_equal(decode_mask(by_id["ref3"]["mask"]), CORNER)
    # a two-part polygon object is the union of its parts
    assert np.array_equal(decode_mask(by_id["ref4"]["mask"]), rect(2, 10, 2, 8, (24, 32)) | rect(14, 20, 20, 28, (24, 32)))


def test_refer_slanted_polygon_against_independent_rasterisation(refer_spec):
    rows = load_refer({**refer_spec, "split": "train"}, dataset="refcocog_train")
    assert len(rows) == 1
    ours = decode_mask(rows[0]["mask"])
    # PIL puts pixel centres at integer coordinates, pycocotools at +0.5: shift the vertices by half a pixel
    shifted = [(x - 0.5, y - 0.5) for x, y in zip(TRIANGLE[0::2], TRIANGLE[1::2])]
    canvas = Image.new("L", (32, 24), 0)
    ImageDraw.Draw(canvas).polygon(shifted, fill=1)
    pil = np.asarray(canvas, dtype=bool)
    outline = Image.new("L", (32, 24), 0)
    ImageDraw.Draw(outline).polygon(shifted, outline=1, width=2)
    boundary = np.asarray(outline, dtype=bool)
    assert ours.sum() > 150 and (ours ^ pil).sum() < 0.1 * ours.sum()
    assert not ((ours ^ pil) & ~boundary).any(), "differences may only lie on the polygon's edge"


def test_refer_expression_level_and_sentence_choice(refer_spec):
    rows = load_refer({**refer_spec, "level": "expression"}, dataset="d")
    assert len(rows) == 2 + 1 + 1 + 3
    assert len({r["sample_id"] for r in rows}) == len(rows)
    assert [r["instruction"] for r in rows if r["source_id"].startswith("refcocog(umd):ref=4:")] == \
        ["two boxes", "the pair", "both squares"]
    same_ref = [r for r in rows if ":ref=4:" in r["source_id"]]
    assert all(r["mask"] == same_ref[0]["mask"] for r in same_ref)
    with pytest.raises(DataError, match="ref 2 has 1 sentences; the spec asks for sentence 1"):
        load_refer({**refer_spec, "sentence": 1}, dataset="d")


def test_refer_is_deterministic(refer_spec):
    assert load_refer(refer_spec, dataset="d") == load_refer(refer_spec, dataset="d")


def test_refer_layout_errors(refer_spec, tmp_path):
    with pytest.raises(MissingResourceError, match=r"refs\(unc\)\.p does not exist.*refs\(umd\)\.p"):
        load_refer({**refer_spec, "split_by": "unc"}, dataset="d")
    with pytest.raises(MissingResourceError, match="refcoco does not exist"):
        load_refer({**refer_spec, "dataset": "refcoco"}, dataset="d")
    with pytest.raises(MissingResourceError, match="nowhere is not a folder"):
        load_refer({**refer_spec, "images": str(tmp_path / "nowhere")}, dataset="d")
    with pytest.raises(DataError, match=r"no refs in split 'testB' \(splits present: \['test', 'train'\]\)"):
        load_refer({**refer_spec, "split": "testB"}, dataset="d")
    with pytest.raises(ConfigError, match="level is 'sentence'"):
        load_refer({**refer_spec, "level": "sentence"}, dataset="d")
    (Path(refer_spec["root"]) / "refcocog" / "instances.json").unlink()
    with pytest.raises(MissingResourceError, match="instances.json does not exist"):
        load_refer(refer_spec, dataset="d")


def test_refer_dangling_ids(refer_spec):
    edit_refer(refer_spec, refs=lambda refs: refs + [{**refs[0], "ref_id": 9, "image_id": 77}])
    with pytest.raises(DataError, match="ref 9 points to image id 77"):
        load_refer(refer_spec, dataset="d")
    edit_refer(refer_spec, refs=lambda refs: [r for r in refs if r["ref_id"] != 9] + [{**refs[0], "ref_id": 8, "ann_id": 999}])
    with pytest.raises(DataError, match="ref 8 points to annotation id 999"):
        load_refer(refer_spec, dataset="d")


def test_refer_bad_pickle_and_json(refer_spec):
    folder = Path(refer_spec["root"]) / "refcocog"
    (folder / "instances.json").write_text("{not json")
    with pytest.raises(DataError, match="instances.json is not valid JSON"):
        load_refer(refer_spec, dataset="d")
    (folder / "refs(umd).p").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"refs\(umd\)\.p is not a readable pickle"):
        load_refer(refer_spec, dataset="d")


def test_refer_missing_and_unreadable_images(refer_spec):
    images = Path(refer_spec["images"])
    (images / "COCO_train2014_000000000002.png").unlink()
    with pytest.raises(MissingResourceError, match="COCO_train2014_000000000002.png does not exist"):
        load_refer(refer_spec, dataset="d")
    skipped = []
    rows = load_refer(refer_spec, dataset="d", skip_unreadable=True, skipped=skipped)
    assert [r["sample_id"] for r in rows] == ["ref1", "ref2"]
    assert skipped == [{"image": str(images / "COCO_train2014_000000000002.png"), "reason": "does not exist",
                        "samples": ["ref3", "ref4"]}]
    assert len(load_refer(refer_spec, dataset="d", check_images=False)) == 4  # the benchmark's switch
    (images / "COCO_train2014_000000000001.jpg").write_bytes(b"not an image")
    save_image(images / "COCO_train2014_000000000002.png", 32, 24)
    with pytest.raises(DataError, match="000000000001.jpg cannot be read"):
        load_refer(refer_spec, dataset="d")
    save_image(images / "COCO_train2014_000000000001.jpg", 41, 30)
    with pytest.raises(DataError, match="is 41x30 but instances.json says 40x30"):
        load_refer(refer_spec, dataset="d")


def truncate(path: Path) -> None:
    """Cut a JPEG in half: its header still reads (size, mode), its pixels do not."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_refer_truncated_jpeg_is_unreadable_or_skipped(refer_spec):
    images = Path(refer_spec["images"])
    jpeg = images / "COCO_train2014_000000000001.jpg"
    save_image(jpeg, 40, 30, seed=1, quality=95)
    truncate(jpeg)
    with Image.open(jpeg) as im:
        assert im.size == (40, 30)  # a header check alone would pass it
    with pytest.raises(DataError, match=r"000000000001\.jpg cannot be read \(OSError: image file is truncated"):
        load_refer(refer_spec, dataset="d")
    skipped = []
    rows = load_refer(refer_spec, dataset="d", skip_unreadable=True, skipped=skipped)
    assert [r["sample_id"] for r in rows] == ["ref3", "ref4"]
    assert [(s["image"], s["samples"]) for s in skipped] == [(str(jpeg), ["ref1", "ref2"])]
    assert "truncated" in skipped[0]["reason"]


class _CallsPrint:
    """Pickles to a call of print(): what a tampered refs file could do with os.system."""

    def __reduce__(self):
        return (print, ("code ran while unpickling",))


def test_refer_pickle_that_would_call_a_function_is_refused(refer_spec, capsys):
    refs_file = Path(refer_spec["root"]) / "refcocog" / "refs(umd).p"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        refs_file.write_bytes(pickle.dumps([{"ref_id": 1, "sentences": _CallsPrint()}], protocol=protocol))
        with pytest.raises(DataError, match=r"refs\(umd\)\.p was refused: it names the Python object "
                                            r"'(builtins|__builtin__)\.print'"):
            load_refer(refer_spec, dataset="d")
    assert "code ran" not in capsys.readouterr().out


def test_refer_python2_pickles_still_load(refer_spec):
    """Python 2 wrote REFER's refs: byte strings (latin-1 where not ASCII) and unicode, protocols 0 and 2."""
    refs_file = Path(refer_spec["root"]) / "refcocog" / "refs(umd).p"
    original = load_refer(refer_spec, dataset="d", check_images=False)
    refs = pickle.loads(refs_file.read_bytes())
    # What Python 2 writes for a str is opcode U/T (SHORT_BINSTRING/BINSTRING) with raw bytes; Python 3
    # never writes it, so build that pickle by hand from the protocol-2 opcodes.
    def py2_protocol2(obj) -> bytes:
        def enc(o) -> bytes:
            if isinstance(o, dict):
                return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
            if isinstance(o, list):
                return b"](" + b"".join(enc(v) for v in o) + b"e"
            if isinstance(o, str):  # a Python 2 byte string, latin-1 where not ASCII
                raw = o.encode("latin1")
                return b"U" + bytes([len(raw)]) + raw
            if isinstance(o, bool):
                return b"\x88" if o else b"\x89"
            if isinstance(o, int):
                return b"J" + o.to_bytes(4, "little", signed=True)
            raise TypeError(type(o))
        return b"\x80\x02" + enc(obj) + b"."

    refs[0]["sentences"][0]["sent"] = "caf\xe9 on the left"  # not ASCII: latin-1 in Python 2
    refs_file.write_bytes(py2_protocol2(refs))
    rows = load_refer(refer_spec, dataset="d", check_images=False)
    by_ref = {r["source_id"].split("ref=")[1].split(":")[0]: r for r in rows}
    assert by_ref[str(refs[0]["ref_id"])]["instruction"] == "caf\xe9 on the left"
    assert [r["sample_id"] for r in rows] == [r["sample_id"] for r in original]
    # protocol 0 (the default of Python 2's pickle.dump) with unicode strings
    refs_file.write_bytes(pickle.dumps(refs, protocol=0))
    assert [r["instruction"] for r in load_refer(refer_spec, dataset="d", check_images=False)] == \
        [r["instruction"] for r in rows]


# --------------------------------------------------------------------------------------------- ReasonSeg

def write_reasonseg(root: Path) -> dict:
    root.mkdir(parents=True)
    save_image(root / "a.jpg", 40, 30, seed=3)
    (root / "a.json").write_text(json.dumps({
        "text": ["what holds the cup?", "the table"], "is_sentence": True,
        "shapes": [
            {"label": "ignore", "points": [[10, 5], [15, 5], [15, 10], [10, 10]]},
            {"label": "target", "points": [[2.9, 2.2], [30, 2], [30, 20], [2, 20.7]]},  # truncated to ints
            {"label": "flag", "points": [[0, 0], [39, 0], [39, 29], [0, 29]]},
        ]}))
    save_image(root / "b.jpg", 24, 18, seed=4)
    (root / "b.json").write_text(json.dumps({
        "text": ["the small thing", "the little one"], "is_sentence": False,
        "shapes": [
            {"label": "target", "points": [[5, 3], [8, 3], [8, 6], [5, 6]]},
            {"label": "Ignore_region", "points": [[0, 0], [20, 0], [20, 15], [0, 15]]},
        ]}))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; viewers (and cv2.imread in LISA) turn it 90 degrees clockwise
    save_image(root / "c.jpg", 40, 30, seed=5, exif=exif)
    (root / "c.json").write_text(json.dumps({
        "text": ["the top"], "is_sentence": False,
        "shapes": [{"label": "target", "points": [[0, 0], [29, 0], [29, 4], [0, 4]]}]}))
    return {"loader": "reasonseg", "root": str(root)}


def test_reasonseg_masks_follow_lisa(tmp_path):
    spec = write_reasonseg(tmp_path / "val")
    rows = load_reasonseg(spec, dataset="reasonseg_val", image_dir=tmp_path / "out")
    assert [r["sample_id"] for r in rows] == ["a", "b", "c"]
    a, b, c = rows
    assert a["instruction"] == "what holds the cup?" and a["kind"] == "sentence" and b["kind"] == "phrase"
    assert (a["height"], a["width"], a["split"]) == (30, 40, "val")
    # OpenCV/LISA fill integer polygons including their outline: x0..x1 and y0..y1 inclusive
    big, small = rect(2, 21, 2, 31, (30, 40)), rect(5, 11, 10, 16, (30, 40))
    assert np.array_equal(decode_mask(a["mask"]), big & ~small)  # the smaller ignore is drawn last
    assert np.array_equal(decode_mask(a["ignore"]), small)  # and the flag shape is skipped
    inner, region = rect(3, 7, 5, 9, (18, 24)), rect(0, 16, 0, 21, (18, 24))
    assert np.array_equal(decode_mask(b["mask"]), inner)  # the smaller target overwrites the ignore region
    assert np.array_equal(decode_mask(b["ignore"]), region & ~inner)
    # EXIF-rotated image: an upright copy, with the sides swapped
    assert (c["width"], c["height"]) == (30, 40) and Path(c["image"]).parent == tmp_path / "out"
    with Image.open(c["image"]) as im:
        assert im.size == (30, 40)
    assert c["ignore"] is None and np.array_equal(decode_mask(c["mask"]), rect(0, 5, 0, 30, (40, 30)))
    again = load_reasonseg(spec, dataset="reasonseg_val", image_dir=tmp_path / "out")
    assert again == rows
    (Path(spec["root"]) / "c.json").unlink()
    (Path(spec["root"]) / "c.jpg").unlink()
    second = load_reasonseg({**spec, "text_index": 1}, dataset="v", image_dir=tmp_path / "out")
    assert [r["instruction"] for r in second] == ["the table", "the little one"]


def test_reasonseg_errors(tmp_path):
    spec = write_reasonseg(tmp_path / "val")
    root = Path(spec["root"])
    with pytest.raises(DataError, match="c.json has 1 queries; the spec asks for text_index 1"):
        load_reasonseg({**spec, "text_index": 1}, dataset="v", image_dir=tmp_path / "out")
    (root / "b.jpg").unlink()
    with pytest.raises(MissingResourceError, match="b.jpg does not exist"):
        load_reasonseg(spec, dataset="v", image_dir=tmp_path / "out")
    skipped = []
    rows = load_reasonseg(spec, dataset="v", image_dir=tmp_path / "out", skip_unreadable=True, skipped=skipped)
    assert [r["sample_id"] for r in rows] == ["a", "c"] and skipped[0]["samples"] == ["b"]
    (root / "b.json").unlink()
    (root / "a.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match="a.jpg cannot be read"):
        load_reasonseg(spec, dataset="v", image_dir=tmp_path / "out")
    save_image(root / "d.png", 8, 8)
    with pytest.raises(DataError, match=r"d.png \(expected d.json beside it\)"):
        load_reasonseg(spec, dataset="v", image_dir=tmp_path / "out")
    (root / "d.png").unlink()
    save_image(root / "a.jpg", 40, 30)
    (root / "c.json").write_text("{")
    with pytest.raises(DataError, match="c.json is not valid JSON"):
        load_reasonseg(spec, dataset="v", image_dir=tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .json annotation files"):
        load_reasonseg({"root": str(tmp_path / "empty")}, dataset="v", image_dir=tmp_path / "out")
    with pytest.raises(MissingResourceError, match="missing is not a folder"):
        load_reasonseg({"root": str(tmp_path / "missing")}, dataset="v", image_dir=tmp_path / "out")


# --------------------------------------------------------------------------------------------- ImageNet

def write_imagenet(root: Path) -> dict:
    for wnid, files in {"n01443537": ["n01443537_7.JPEG"], "n01440764": ["n01440764_2.JPEG", "n01440764_10.JPEG"]}.items():
        (root / "train" / wnid).mkdir(parents=True)
        for k, name in enumerate(files):
            save_image(root / "train" / wnid / name, 12 + k, 10, format="JPEG")
    (root / "train" / "n01440764" / "readme.txt").write_text("not an image")
    synsets = root / "LOC_synset_mapping.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
                       "n01484850 great white shark, white shark\n")
    return {"loader": "imagenet", "root": str(root / "train"), "synsets": str(synsets)}


def test_imagenet_rows(tmp_path):
    spec = write_imagenet(tmp_path)
    rows = load_imagenet(spec, dataset="imagenet_train")
    assert [r["sample_id"] for r in rows] == ["n01440764_10", "n01440764_2", "n01443537_7"]
    assert [r["instruction"] for r in rows] == ["tench", "tench", "goldfish"]
    assert all(r["mask"] is None and r["ignore"] is None and r["kind"] == "classname" for r in rows)
    assert rows[2]["source_id"] == "imagenet:n01443537/n01443537_7.JPEG" and rows[0]["height"] is None
    assert load_imagenet({**spec, "synonym": "all"}, dataset="x")[0]["instruction"] == "tench, Tinca tinca"
    sized = load_imagenet({**spec, "read_sizes": True}, dataset="x")
    assert [(r["width"], r["height"]) for r in sized] == [(13, 10), (12, 10), (12, 10)]
    assert load_imagenet(spec, dataset="imagenet_train") == rows


def test_imagenet_errors(tmp_path):
    spec = write_imagenet(tmp_path)
    with pytest.raises(ConfigError, match="synonym is 'some'"):
        load_imagenet({**spec, "synonym": "some"}, dataset="x")
    with pytest.raises(MissingResourceError, match="nope.txt does not exist"):
        load_imagenet({**spec, "synsets": str(tmp_path / "nope.txt")}, dataset="x")
    broken = tmp_path / "train" / "n01440764" / "n01440764_2.JPEG"
    broken.write_bytes(b"junk")
    with pytest.raises(DataError, match="n01440764_2.JPEG cannot be read"):
        load_imagenet({**spec, "read_sizes": True}, dataset="x")
    skipped = []
    rows = load_imagenet({**spec, "read_sizes": True}, dataset="x", skip_unreadable=True, skipped=skipped)
    assert len(rows) == 2 and skipped[0]["samples"] == ["n01440764_2"]
    (tmp_path / "train" / "n09999999").mkdir()
    with pytest.raises(DataError, match="class folder n09999999 .* is not in"):
        load_imagenet(spec, dataset="x")
    Path(spec["synsets"]).write_text("tench\n")
    with pytest.raises(DataError, match="LOC_synset_mapping.txt:1: 'tench' is not"):
        load_imagenet(spec, dataset="x")


# --------------------------------------------------------------------------------------------- HF

def image_bytes(width, height, fmt, seed):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def eval_table(masks, images, texts, image_ids):
    return pa.table({
        "image": pa.array([{"bytes": b, "path": None} for b in images], type=IMAGE_TYPE),
        "mask": pa.array([m.tolist() for m in masks], type=pa.list_(pa.list_(pa.bool_()))),
        "text": texts, "image_id": image_ids, "ann_id": list(range(100, 100 + len(masks))),
        "img_height": [m.shape[0] for m in masks], "img_width": [m.shape[1] for m in masks],
    })


HF_MASKS = [rect(1, 5, 2, 9, (12, 16)), rect(6, 12, 0, 4, (12, 16)), rect(0, 10, 3, 4, (10, 8))]


@pytest.fixture
def hf_eval(tmp_path):
    jpeg, png = image_bytes(16, 12, "JPEG", 1), image_bytes(8, 10, "PNG", 2)
    table = eval_table(HF_MASKS, [jpeg, jpeg, png], ["the left one", "the bottom one", "a bar"], [7, 7, 8])
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(table, tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")
    pq.write_table(table.slice(2), tmp_path / "hub" / "data" / "val-00000-of-00001.parquet")
    return {"loader": "hf", "path": str(tmp_path / "hub"), "split": "test"}, jpeg, png


def test_hf_evaluation_schema(hf_eval, tmp_path):
    spec, jpeg, png = hf_eval
    rows = load_hf(spec, dataset="refcoco_testA", image_dir=tmp_path / "images")
    assert [r["instruction"] for r in rows] == ["the left one", "the bottom one", "a bar"]
    assert [(r["height"], r["width"]) for r in rows] == [(12, 16), (12, 16), (10, 8)]
    for r, expected in zip(rows, HF_MASKS):
        assert np.array_equal(decode_mask(r["mask"]), expected)
    assert rows[0]["image"] == rows[1]["image"] == str(tmp_path / "images" / "7.png")  # written once
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["7.png", "8.png"]
    assert (tmp_path / "images" / "8.png").read_bytes() == png  # PNG bytes are copied unchanged
    with Image.open(rows[0]["image"]) as written:
        assert written.format == "PNG"
        assert np.array_equal(np.asarray(written), np.asarray(Image.open(io.BytesIO(jpeg))))  # lossless
    assert rows[2]["source_id"] == "hf:hub:test:2:image_id=8:ann_id=102"
    assert len({r["sample_id"] for r in rows}) == 3 and all(r["split"] == "test" for r in rows)
    again = load_hf(spec, dataset="refcoco_testA", image_dir=tmp_path / "images")
    assert again == rows
    assert len(load_hf({**spec, "split": "val"}, dataset="x", image_dir=tmp_path / "v")) == 1


def test_hf_save_to_disk_and_mask_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    mask_png = io.BytesIO()
    Image.fromarray((HF_MASKS[0] * 255).astype(np.uint8)).save(mask_png, format="PNG")
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image(), "text": datasets.Value("string"),
                                  "image_id": datasets.Value("int64"), "ann_id": datasets.Value("int64"),
                                  "img_height": datasets.Value("int64"), "img_width": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({
        "image": [{"bytes": image_bytes(16, 12, "JPEG", 5), "path": None}],
        "mask": [{"bytes": mask_png.getvalue(), "path": None}], "text": ["the left one"], "image_id": [3],
        "ann_id": [1], "img_height": [12], "img_width": [16]}, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    rows = load_hf({"path": str(tmp_path / "saved")}, dataset="x", image_dir=tmp_path / "images")
    assert len(rows) == 1 and rows[0]["split"] == "test"
    assert np.array_equal(decode_mask(rows[0]["mask"]), HF_MASKS[0])


def test_hf_segzero_training_schema(tmp_path):
    prompt = ("Please find 'the man's red umbrella' with bbox and points.Compare the difference between objects "
              "and find the most closely matched one.i.e., <think> thinking process here </think>"
              "<answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>")
    table = pa.table({
        "id": ["seg_1", "seg_2"], "problem": [prompt, "dog on the left"],
        "solution": ['{"bbox": [1, 2, 3, 4]}', '{"bbox": [5, 6, 7, 8]}'],
        "image": pa.array([{"bytes": image_bytes(28, 28, "JPEG", 6), "path": None},
                           {"bytes": image_bytes(28, 28, "PNG", 7), "path": None}], type=IMAGE_TYPE),
        "img_height": [480, 300], "img_width": [640, 400]})
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    rows = load_hf({"path": str(tmp_path / "train-00000-of-00001.parquet")}, dataset="refcocog_train",
                   image_dir=tmp_path / "images")
    assert [r["instruction"] for r in rows] == ["the man's red umbrella", "dog on the left"]
    assert all(r["mask"] is None and r["ignore"] is None and r["split"] == "train" for r in rows)
    assert (rows[0]["height"], rows[0]["width"]) == (28, 28) and "original=640x480" in rows[0]["source_id"]
    assert segzero_instruction("Please find 'the cat'.") == "the cat"
    # a pool without masks still goes through the manifest and the sampling of training pairs
    manifest = tmp_path / "pool.jsonl"
    write_jsonl(manifest, rows)
    pairs = sample_pairs(load_eval_manifest(manifest), 1, seed=0, name="ts")
    assert pairs[0]["instruction"] in {"the man's red umbrella", "dog on the left"}


def test_hf_errors(hf_eval, tmp_path):
    spec, jpeg, png = hf_eval
    with pytest.raises(ConfigError, match=r"split is not set and .* holds splits \['test', 'val'\]"):
        load_hf({"path": spec["path"]}, dataset="x", image_dir=tmp_path / "i")
    with pytest.raises(DataError, match=r"no parquet files of split 'testB'"):
        load_hf({**spec, "split": "testB"}, dataset="x", image_dir=tmp_path / "i")
    with pytest.raises(MissingResourceError, match="nothing does not exist"):
        load_hf({"path": str(tmp_path / "nothing")}, dataset="x", image_dir=tmp_path / "i")
    (tmp_path / "blank").mkdir()
    with pytest.raises(DataError, match="holds no .parquet files"):
        load_hf({"path": str(tmp_path / "blank")}, dataset="x", image_dir=tmp_path / "i")
    pq.write_table(pa.table({"picture": [b"x"], "caption": ["y"]}), tmp_path / "odd.parquet")
    with pytest.raises(DataError, match="match neither the evaluation schema"):
        load_hf({"path": str(tmp_path / "odd.parquet")}, dataset="x", image_dir=tmp_path / "i")
    bad = eval_table(HF_MASKS[:2], [jpeg, b"broken bytes"], ["a", "b"], [1, 2])
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="bad.parquet row 1 .*the image cannot be read"):
        load_hf({"path": str(tmp_path / "bad.parquet")}, dataset="x", image_dir=tmp_path / "i")
    skipped = []
    rows = load_hf({"path": str(tmp_path / "bad.parquet")}, dataset="x", image_dir=tmp_path / "i",
                   skip_unreadable=True, skipped=skipped)
    assert len(rows) == 1 and skipped[0]["samples"] == ["bad_000001"]
    wrong = eval_table([HF_MASKS[2]], [jpeg], ["a"], [1])  # a 10x8 mask on a 16x12 image
    pq.write_table(wrong, tmp_path / "wrong.parquet")
    with pytest.raises(DataError, match="the image is 16x12 but img_width x img_height is 8x10"):
        load_hf({"path": str(tmp_path / "wrong.parquet")}, dataset="x", image_dir=tmp_path / "i")


# --------------------------------------------------------------------------------------------- through the settings

@pytest.fixture
def real_settings(tmp_path, refer_spec, hf_eval):
    write_reasonseg(tmp_path / "reasonseg" / "val")
    imagenet = write_imagenet(tmp_path / "imagenet")
    base = load_settings(PROJECT_ROOT / "params.yaml", "demo")
    datasets = {
        "refcocog_test": refer_spec,
        "refcocog_test_skip": {**refer_spec, "skip_unreadable": True},
        "reasonseg_val": {"loader": "reasonseg", "root": str(tmp_path / "reasonseg" / "val")},
        "imagenet_train": imagenet,
        "refcoco_testA": hf_eval[0],
    }
    return dataclasses.replace(base, preset="t", datasets=datasets, layout=Layout("t", tmp_path / "project"))


def test_load_rows_and_describe_every_loader(real_settings):
    expected = {"refcocog_test": 4, "refcocog_test_skip": 4, "reasonseg_val": 3, "imagenet_train": 3,
                "refcoco_testA": 3}
    for name, count in expected.items():
        rows = load_rows(real_settings, name)
        assert len(rows) == count and all({"mask", "ignore"} <= set(r) for r in rows), name
        found = describe_dataset(real_settings, name)
        assert found["loader"] == real_settings.datasets[name]["loader"] and found["samples"] == count, found
        assert "mask_source" in found and "image_folder" in found
    assert describe_dataset(real_settings, "refcocog_test")["refs"] == 4
    assert describe_dataset(real_settings, "refcocog_test")["images"] == 2
    hf_images = real_settings.layout.dataset_images("refcoco_testA")
    assert sorted(p.name for p in hf_images.iterdir()) == ["7.png", "8.png"]


def test_skip_unreadable_writes_the_skipped_list(real_settings, tmp_path):
    images = Path(real_settings.datasets["refcocog_test"]["images"])
    (images / "COCO_train2014_000000000001.jpg").unlink()
    manifest = tmp_path / "out" / "refcocog_test_skip.jsonl"
    rows = load_rows(real_settings, "refcocog_test_skip", manifest)
    assert [r["sample_id"] for r in rows] == ["ref3", "ref4"]
    listed = [json.loads(line) for line in (tmp_path / "out" / "refcocog_test_skip.skipped.jsonl").read_text().splitlines()]
    assert listed == [{"image": str(images / "COCO_train2014_000000000001.jpg"), "reason": "does not exist",
                       "samples": ["ref1", "ref2"]}]
    found = describe_dataset(real_settings, "refcocog_test_skip")
    assert found["images_missing"] == 1
    with pytest.raises(MissingResourceError, match="1 of 2 images are missing .*000000000001.jpg does not exist"):
        load_rows(real_settings, "refcocog_test")
    with pytest.raises(MissingResourceError, match="000000000001.jpg does not exist"):
        describe_dataset(real_settings, "refcocog_test")


def test_describe_names_missing_paths(real_settings, tmp_path):
    broken = {**real_settings.datasets, "reasonseg_val": {"loader": "reasonseg", "root": str(tmp_path / "gone")},
              "refcocog_test": {**real_settings.datasets["refcocog_test"], "split_by": "google"}}
    settings = dataclasses.replace(real_settings, datasets=broken)
    with pytest.raises(MissingResourceError, match=r"presets.t.datasets.reasonseg_val.root: .*gone is not a folder \(expected LISA's ReasonSeg"):
        describe_dataset(settings, "reasonseg_val")
    with pytest.raises(MissingResourceError, match=r"refs\(google\)\.p does not exist"):
        describe_dataset(settings, "refcocog_test")
    with pytest.raises(RiseError, match="not defined"):
        describe_dataset(settings, "nope")


def test_hf_hub_id_offline_fails_naming_the_setting(monkeypatch):
    from rise.data.hf import open_hf
    from rise.errors import MissingResourceError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingResourceError, match=r"presets.paper.datasets.x.path: 'someone/ReasonSeg_val'"):
        open_hf({"loader": "hf", "path": "someone/ReasonSeg_val"}, "presets.paper.datasets.x")
