"""The toy world: 112x112 images (the policy's own view: 4 x 4 cells of 28 px, one visual token
each) holding 2-4 coloured shapes, one per cell, with exact masks.

Each colour+shape pair has a class-like name ("tomato" is the red circle), which only CLIP learns
in pretraining. Instruction families (each unambiguous by construction):
  base       "the red circle"   (the only family the policy is pretrained on)
  classname  "the tomato"       (the unique red circle, named by its class)
  colour     "the red shape"    (the only red object)
  shape      "the circle"       (the only circle)
  shade      "the crimson shape"  (the only red object, its colour named by a word for its shade;
                                  only where presets.<preset>.pretrain.shade_words is on)
The floor is tiled, one pale tint per cell, so where a thing is can be seen, not only inferred.
The answer the policy is taught is the real format: a think block naming the object's cell, then
the cell's box and two points inside the object, in the pixels of the image it saw.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rise.contracts import encode_mask
from rise.data.synthetic import COLOURS, SHAPES, shape_mask

SIZE = 112          # image side = the policy's view (image.policy_size), so no resizing anywhere
CELL = 28           # one merged visual token of Qwen2.5-VL (patch 14 x merge 2)
GRID = SIZE // CELL
SIZE_WORDS = {"small": (7.0, 9.0), "large": (10.0, 12.0)}  # radius ranges
JITTER = 1.5        # centre offset within the cell, px (keeps the cell centre inside every shape)

CLASS_NAMES = {
    ("red", "circle"): "tomato", ("yellow", "circle"): "lemon", ("green", "circle"): "lime",
    ("blue", "circle"): "blueberry", ("red", "square"): "brick", ("yellow", "square"): "cheese",
    ("green", "square"): "lawn", ("blue", "square"): "tile", ("red", "triangle"): "flame",
    ("yellow", "triangle"): "pyramid", ("green", "triangle"): "tree", ("blue", "triangle"): "sail",
}
# Two words for a shade of each colour: the `shade` family names a colour in words the policy is
# never shown grounded; it can know them only in words (`shade_fact_text`, docs/toy-log.md "Fourteenth round").
SHADES = {"red": ("crimson", "scarlet"), "green": ("emerald", "olive"), "blue": ("azure", "navy"),
          "yellow": ("golden", "amber")}
FAMILIES = ("base", "classname", "colour", "shape", "shade")


def readable_families(shade_words: bool) -> tuple[str, ...]:
    """The families the toy models can be asked about: `shade` only where its words were part of
    their pretraining (`presets.<preset>.pretrain.shade_words`)."""
    return FAMILIES if shade_words else tuple(f for f in FAMILIES if f != "shade")


# Made-up words the policy's pretraining uses for "some object, I cannot tell which": each names a
# randomly chosen object of its scene. No family RISE trains or evaluates on uses them.
NONCE_WORDS = ("blicket", "dax", "wug", "fep", "zorp", "kiki", "roke", "gazzer", "tufa", "modi", "pilk", "jeb")


FACT_FORMS = ("sentence", "entry")


def fact_text(name: str, form: str = "sentence") -> tuple[str, str]:
    """A question about what a class-like name looks like, and its answer: the toy policy's knowledge
    of the names in words alone, the analogue of what a language model knows about objects before it
    grounds them (docs/toy-log.md). `sentence`: "What is the tomato?", "the tomato is a red circle";
    `entry`: the same question, answered as a glossary entry, "the tomato: red circle", the words the
    compact think block writes after a name (docs/toy-log.md "Fourteenth round")."""
    (colour, shape), = [k for k, v in CLASS_NAMES.items() if v == name]
    if form == "sentence":
        return f"What is the {name}?", f"the {name} is a {colour} {shape}"
    if form == "entry":
        return f"What is the {name}?", f"the {name}: {colour} {shape}"
    raise ValueError(f"unknown fact form '{form}' (known: {FACT_FORMS})")


def fact(rng: random.Random, form: str = "sentence") -> tuple[str, str]:
    """`fact_text` of a class-like name drawn at random."""
    _, name = rng.choice(sorted(CLASS_NAMES.items()))
    return fact_text(name, form)


def shade_fact_text(word: str) -> tuple[str, str]:
    """What colour a shade word names, in words ("What colour is crimson?", "crimson is red")."""
    colour, = [c for c, words in SHADES.items() if word in words]
    return f"What colour is {word}?", f"{word} is {colour}"


def shade_fact(rng: random.Random) -> tuple[str, str]:
    """`shade_fact_text` of a shade word drawn at random."""
    return shade_fact_text(rng.choice(sorted(w for words in SHADES.values() for w in words)))


@dataclass
class ToyObject:
    colour: str
    shape: str
    size: str
    row: int
    col: int
    cx: float
    cy: float
    r: float
    mask: np.ndarray

    @property
    def name(self) -> str:
        return CLASS_NAMES[(self.colour, self.shape)]

    @property
    def cell_box(self) -> list[int]:
        return [self.col * CELL, self.row * CELL, (self.col + 1) * CELL, (self.row + 1) * CELL]

    @property
    def tight_box(self) -> list[float]:
        ys, xs = np.nonzero(self.mask)
        return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def make_scene(rng: random.Random, n_objects: int) -> list[ToyObject]:
    """n objects in distinct random cells, random colour, shape and size."""
    cells = rng.sample(range(GRID * GRID), n_objects)
    objects = []
    for cell in cells:
        row, col = divmod(cell, GRID)
        size = rng.choice(list(SIZE_WORDS))
        r = rng.uniform(*SIZE_WORDS[size])
        cx = col * CELL + CELL / 2 + rng.uniform(-JITTER, JITTER)
        cy = row * CELL + CELL / 2 + rng.uniform(-JITTER, JITTER)
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        objects.append(ToyObject(colour, shape, size, row, col, cx, cy, r, shape_mask(shape, cx, cy, r, (SIZE, SIZE))))
    return objects


def floor() -> np.ndarray:
    """The tiled floor: each cell's tile has its own pale tint (red rises with the column, blue with
    the row), so a visual token carries where it is in its content. A from-scratch policy reads a
    position from content within minutes; from rotary phases alone it had not after 10 (docs/toy-log.md)."""
    canvas = np.zeros((SIZE, SIZE, 3), dtype=np.float32)
    for row in range(GRID):
        for col in range(GRID):
            canvas[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = (150 + 30 * col, 225, 150 + 30 * row)
    return canvas


FLOOR = floor()


def render(objects: list[ToyObject], noise: np.random.Generator) -> Image.Image:
    canvas = FLOOR + noise.normal(0, 5, FLOOR.shape)
    for o in objects:
        canvas[o.mask] = np.array(COLOURS[o.colour], dtype=np.float32) + noise.normal(0, 4, (int(o.mask.sum()), 3))
    return Image.fromarray(canvas.clip(0, 255).astype(np.uint8))


def instructions(objects: list[ToyObject], family: str) -> list[tuple[str, int]]:
    """(instruction, target index) for every object this family can name unambiguously here."""
    if family not in FAMILIES:
        raise ValueError(f"unknown toy instruction family '{family}' (known: {FAMILIES})")
    def unique(key):
        keys = [key(o) for o in objects]
        return [i for i, k in enumerate(keys) if keys.count(k) == 1]

    if family in ("base", "classname"):
        picks = unique(lambda o: (o.colour, o.shape))
        text = (lambda o: f"the {o.colour} {o.shape}") if family == "base" else (lambda o: f"the {o.name}")
    elif family == "colour":
        picks, text = unique(lambda o: o.colour), (lambda o: f"the {o.colour} shape")
    elif family == "shade":
        # which of the two words: by the object's place in the scene's list, which nothing in the image shows
        picks = unique(lambda o: o.colour)
        return [(f"the {SHADES[objects[i].colour][i % 2]} shape", i) for i in picks]
    else:
        picks, text = unique(lambda o: o.shape), (lambda o: f"the {o.shape}")
    return [(text(objects[i]), i) for i in picks]


def answer_points(obj: ToyObject) -> tuple[list[int], list[int]]:
    """Two points inside every shape of the world: the cell centre and 4 px below it."""
    cx, cy = obj.col * CELL + CELL // 2, obj.row * CELL + CELL // 2
    return [cx, cy], [cx, cy + 4]


THINK_STYLES = ("echo", "referent", "compact")


def think_text(instruction: str, obj: ToyObject, style: str = "echo") -> str:
    """The think block's content. `echo`: "the red circle is in row 3, column 1". `referent`: the
    instruction, then the object it resolves to by colour and shape, then where that object is:
    "the tomato: the red circle, in row 3, column 1", so an instruction the policy cannot read yet
    is translated into words it can look up (what RISE's GRPO has to learn; docs/toy-log.md)."""
    where = f"row {obj.row + 1}, column {obj.col + 1}"
    if style == "echo":
        return f"{instruction} is in {where}"
    if style == "referent":
        return f"{instruction}: the {obj.colour} {obj.shape}, in {where}"
    if style == "compact":
        return f"{instruction}: {obj.colour} {obj.shape} {obj.row + 1} {obj.col + 1}"
    raise ValueError(f"unknown toy think style '{style}' (known: {THINK_STYLES})")


def answer_text(instruction: str, obj: ToyObject, points: bool = True, think: str = "echo") -> str:
    """The supervised answer: the real format (think + JSON box and points), box = the object's cell."""
    x1, y1, x2, y2 = obj.cell_box
    # strict JSON, as the rewards (train.json_single_quotes: false) and Seg-Zero's evaluation read it
    body = f'"bbox": [{x1},{y1},{x2},{y2}]'
    if points:
        p1, p2 = answer_points(obj)
        body += f', "points_1": [{p1[0]},{p1[1]}], "points_2": [{p2[0]},{p2[1]}]'
    return f"<think>{think_text(instruction, obj, think)}</think><answer>{{{body}}}</answer>"


def split_seed(seed: int, split: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(split.encode())) & 0xFFFFFFFF


def scenes(seed: int, split: str, n_objects: tuple[int, int] = (2, 4)):
    """An endless seeded stream of (objects, image); splits draw from independent streams."""
    s = split_seed(seed, split)
    rng, noise = random.Random(s), np.random.default_rng(s)
    while True:
        objects = make_scene(rng, rng.randint(*n_objects))
        yield objects, render(objects, noise)


def scene_at(seed: int, split: str, index: int, n_objects: tuple[int, int] = (2, 4)):
    """The (objects, image) of a split's scene `index`, as write_split drew it (its image `<split>_<index>`)."""
    stream = scenes(seed, split, n_objects)
    for _ in range(index):
        next(stream)
    return next(stream)


def write_split(dataset: str, split: str, n_images: int, families, image_dir: str | Path, seed: int,
                n_objects: tuple[int, int] = (2, 4), names=None) -> list[dict]:
    """Writes PNG images and returns evaluation-manifest rows (rise/contracts.py), one row per
    image and family that can name a target in it (a seeded choice among the candidates). `names`:
    the class names the `classname` family may name (a split of the names, e.g. to train GRPO on some
    and test on the others); None, every one."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    pick = random.Random(split_seed(seed, split + "/pick"))
    # a split of the names picks among them with a stream of its own, so that the other families'
    # samples are those of the same split without `names`
    pick_named = random.Random(split_seed(seed, split + "/pick/names"))
    rows = []
    stream = scenes(seed, split, n_objects)
    for k in range(n_images):
        objects, image = next(stream)
        image_id = f"{split}_{k:05d}"
        path = image_dir / f"{image_id}.png"
        image.save(path)
        for family in families:
            options = instructions(objects, family)
            if not options:
                continue
            text, target = pick.choice(options)
            if names is not None and family == "classname":
                options = [(text, i) for text, i in options if objects[i].name in names]
                if not options:
                    continue
                text, target = pick_named.choice(options)
            rows.append({
                "sample_id": f"{image_id}_{family}", "image": str(path), "instruction": text,
                "height": SIZE, "width": SIZE, "mask": encode_mask(objects[target].mask), "ignore": None,
                "dataset": dataset, "split": split, "source_id": f"toy:{image_id}:{target}", "kind": family,
            })
    return rows


# The loader registry's entries (rise/data/__init__.py): seeded scenes with exact masks (docs/toy.md).
PATHS = ()


def load(spec: dict, request) -> list[dict]:
    from rise.errors import ConfigError

    settings = request.settings
    if "shade" in spec["families"] and not (settings.pretrain or {}).get("shade_words", False):
        raise ConfigError(f"{settings.source}: {request.setting}.families has 'shade', but "
                          f"presets.{settings.preset}.pretrain.shade_words is off, so neither the policy's "
                          "tokenizer nor CLIP was taught its words: set shade_words: true")
    unknown = sorted(set(spec.get("names", [])) - set(CLASS_NAMES.values()))
    if unknown:
        raise ConfigError(f"{settings.source}: {request.setting}.names: {unknown} are not class names of the toy "
                          f"world (known: {sorted(CLASS_NAMES.values())})")
    return write_split(request.dataset, spec["split"], spec["n_images"], spec["families"], request.image_dir,
                       request.seed, tuple(spec.get("n_objects", (2, 4))), spec.get("names"))


def describe(spec: dict, request) -> dict:
    return {"split": spec["split"], "images": spec["n_images"], "families": ",".join(spec["families"]),
            **({"names": ",".join(spec["names"])} if "names" in spec else {}),
            "image_folder": str(request.image_dir), "mask_source": "drawn with the toy world's images (exact)"}
