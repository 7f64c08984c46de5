"""Synthetic image-text datasets (chapters 3 and 4) written in the official layouts of
MIRFlickr-25K, NUS-WIDE, Flickr8K, Flickr30K, MS-COCO (Karpathy JSON) and CUHK-PEDES, so that
:mod:`irbook.data.crossmodal` reads them unchanged.

Scenes. An image shows 1-4 objects on a smooth, lightly cluttered background. Each object has
a category, drawn as a distinctive glyph (one of 24 silhouettes with a plain, striped or
dotted fill), a colour (8 named colours, jittered), a size (small, big) and a position (left,
right, top, bottom, centre; one object per position). Category frequencies are skewed
(``1 / (rank + 3)``), as concept frequencies are in the real sets.

- Tagged sets (MIRFlickr-like, 24 categories, V = 1386; NUS-WIDE-like, 21 categories,
  V = 1000): category ``k`` is the dataset's ``k``-th official concept (its tag words are the
  concept name and related words) drawn as glyph ``k``. Labels = categories present. The
  binary tag vector holds words of the present categories (all of an object's words are
  dropped with probability 0.15), sometimes its colour or size word, with probability 0.2 a
  word of an absent category, and 1-9 noise tags drawn from a Zipf-like list of filler words.
- Caption sets (Flickr8K/30K, COCO): 16 categories with English shape names shared by the
  three sets. Each image has 5 distinct captions from a small grammar: synonyms for shapes,
  colours, sizes and positions, several sentence patterns and word orders ("a red circle to
  the left of a big square", "on the right there is a crimson disc"), and partial mentions
  (half the captions name a random subset of the objects). So exact string matching does not
  solve text-to-image retrieval, while the words still determine what is drawn.
- PEDES-like: an identity is a person figure (gender, hair colour and length, upper garment
  type and colour, lower garment type and colour, shoes, bag or none, skin tone); 2-4 images
  per identity vary position, scale, stride, facing side and background; 2 distinct captions
  per image describe the clothing with synonyms.

Every image, tag vector and caption set has its own generator ``make_rng(seed, "crossmodal",
kind, part, index)``, so the output does not depend on generation order and the same seed
gives identical files. Images are drawn at twice the size and reduced with a box filter.
Each dataset folder also gets ``synth_meta.json`` (the objects of every image, category names
and words, the tag vocabulary), which no loader needs.
"""

from __future__ import annotations

import io
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from irbook.data.crossmodal import (
    FOLDERS,
    KARPATHY_DATASETS,
    KARPATHY_IMAGES,
    KARPATHY_JSON,
    MIRFLICKR_FILE,
    MIRFLICKR_LABELS,
    NUSWIDE_FILES,
    NUSWIDE_LABELS,
    PEDES_IMAGES,
    PEDES_JSON,
)
from irbook.data.synth.patterns import _hsv, make_rng
from irbook.data.synth.store import ensure_generated, save_jpeg, write_json
from irbook.data.text import tokenize

GENERATOR_VERSION = 1
STREAM = "crossmodal"
CROSSMODAL_KINDS = ("mirflickr", "nuswide", "flickr8k", "flickr30k", "coco", "pedes")
SPLIT_HINTS = ("n_query", "n_train")  # scale entries passed to the loader, not the writer

CROSSMODAL_SCALES: dict[str, dict[str, dict]] = {
    "smoke": {
        "mirflickr": {"n_pairs": 300, "image_size": 32, "n_query": 50, "n_train": 150},
        "nuswide": {"n_pairs": 300, "image_size": 32, "n_query": 50, "n_train": 150},
        "flickr8k": {"train": 60, "val": 10, "test": 20, "image_size": 32},
        "flickr30k": {"train": 60, "val": 10, "test": 20, "image_size": 32},
        "coco": {"train": 60, "val": 10, "test": 50, "restval": 15, "image_size": 32},
        "pedes": {"train_ids": 20, "val_ids": 5, "test_ids": 5, "image_size": 32},
    },
    "demo": {
        "mirflickr": {"n_pairs": 3000, "image_size": 64, "n_query": 300, "n_train": 1500},
        "nuswide": {"n_pairs": 3000, "image_size": 64, "n_query": 300, "n_train": 1500},
        "flickr8k": {"train": 600, "val": 50, "test": 200, "image_size": 64},
        "flickr30k": {"train": 600, "val": 50, "test": 200, "image_size": 64},
        "coco": {"train": 600, "val": 50, "test": 500, "restval": 100, "image_size": 64},
        "pedes": {"train_ids": 200, "val_ids": 25, "test_ids": 50, "image_size": 64},
    },
}
"""Sizes per scale and kind. ``n_query``/``n_train`` are the split sizes to pass to
``load_mirflickr``/``load_nuswide`` (10% queries, half of the pairs for training, as
2,000/10,000 of MIRFlickr's 20,015); COCO's ``restval`` images count among ``train``; PEDES has
2-4 images per identity."""

# --------------------------------------------------------------------------- vocabulary

GLYPHS = ("disc", "square", "triangle", "star", "hexagon", "diamond", "cross", "ring",
          "crescent", "heart", "arrow", "pentagon", "semicircle", "frame", "bar", "bolt",
          "trapezoid", "hourglass", "chevron", "tee", "ell", "house", "drop", "delta")
FILLS = ("plain", "stripes", "dots")
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.23), "bottom": (0.5, 0.77),
    "centre": (0.5, 0.5)}
SIZES = {"small": 0.24, "big": 0.36}  # glyph side / image side
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 40), "orange": (240, 135, 25), "yellow": (240, 212, 45),
    "green": (45, 160, 65), "blue": (40, 85, 215), "purple": (135, 55, 175),
    "white": (245, 245, 245), "black": (22, 22, 26)}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"), "orange": ("orange", "amber", "tangerine"),
    "yellow": ("yellow", "golden", "lemon"), "green": ("green", "emerald", "lime"),
    "blue": ("blue", "azure", "navy"), "purple": ("purple", "violet", "lilac"),
    "white": ("white", "ivory", "snowy"), "black": ("black", "dark", "inky"),
    "grey": ("grey", "gray", "silver"), "brown": ("brown", "chocolate", "tan"),
    "pink": ("pink", "rose", "salmon")}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
POSITION_PHRASES = {
    "left": ("on the left", "at the left", "on the left side", "to the left"),
    "right": ("on the right", "at the right", "on the right side", "to the right"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "centre": ("in the middle", "in the centre", "at the center")}
CAPTION_CATEGORIES: dict[str, tuple[str, ...]] = {  # glyph -> words, canonical name first
    "disc": ("circle", "disc", "round shape", "ball"), "square": ("square", "box", "block"),
    "triangle": ("triangle", "wedge", "three sided shape"),
    "star": ("star", "starburst", "five pointed star"),
    "hexagon": ("hexagon", "six sided shape", "honeycomb cell"),
    "diamond": ("diamond", "rhombus", "lozenge"), "cross": ("cross", "plus sign", "plus"),
    "ring": ("ring", "donut", "hoop"), "crescent": ("crescent", "moon", "sickle"),
    "heart": ("heart", "love heart", "heart shape"), "arrow": ("arrow", "pointer", "arrowhead"),
    "pentagon": ("pentagon", "five sided shape", "pentagon tile"),
    "semicircle": ("semicircle", "half circle", "dome"),
    "frame": ("frame", "picture frame", "border"), "bar": ("bar", "rectangle", "plank"),
    "bolt": ("lightning bolt", "zigzag", "bolt")}
TAG_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "mirflickr": {
        "animals": ("animals", "animal", "wildlife", "pet"), "baby": ("baby", "infant", "kid"),
        "bird": ("bird", "birds", "seagull"), "car": ("car", "cars", "auto"),
        "clouds": ("clouds", "cloud", "cloudy"), "dog": ("dog", "puppy", "dogs"),
        "female": ("female", "woman", "girl"), "flower": ("flower", "flowers", "bloom"),
        "food": ("food", "dinner", "delicious"), "indoor": ("indoor", "indoors", "inside"),
        "lake": ("lake", "pond"), "male": ("male", "man", "boy"),
        "night": ("night", "nighttime", "evening"), "people": ("people", "person", "crowd"),
        "plant_life": ("plant", "plants", "leaf", "garden"), "portrait": ("portrait", "face"),
        "river": ("river", "stream"), "sea": ("sea", "ocean", "waves"),
        "sky": ("sky", "skies", "heaven"), "structures": ("architecture", "building", "tower"),
        "sunset": ("sunset", "dusk", "sundown"), "transport": ("transport", "train", "bus"),
        "tree": ("tree", "trees", "forest"), "water": ("water", "splash", "aqua")},
    "nuswide": {
        "animal": ("animal", "animals", "zoo"), "beach": ("beach", "sand", "shore"),
        "buildings": ("buildings", "building", "architecture", "city"),
        "clouds": ("clouds", "cloud", "cloudy"), "flowers": ("flowers", "flower", "bloom"),
        "grass": ("grass", "lawn", "meadow"), "lake": ("lake", "pond"),
        "mountain": ("mountain", "mountains", "peak"), "ocean": ("ocean", "sea", "waves"),
        "person": ("person", "people", "portrait"), "plants": ("plants", "plant", "leaves"),
        "reflection": ("reflection", "mirror"), "road": ("road", "street", "highway"),
        "rocks": ("rocks", "rock", "stone"), "sky": ("sky", "skyline", "skies"),
        "snow": ("snow", "winter", "ice"), "sunset": ("sunset", "dusk", "sundown"),
        "tree": ("tree", "trees", "forest"), "vehicle": ("vehicle", "car", "truck"),
        "water": ("water", "river", "splash"), "window": ("window", "windows", "glass")},
}
VOCAB_SIZE = {"mirflickr": 1386, "nuswide": 1000}
TAG_LABELS = {"mirflickr": MIRFLICKR_LABELS, "nuswide": NUSWIDE_LABELS}
CAMERA_TAGS = ("nikon", "canon", "explore", "travel", "vacation", "summer", "photo", "2008",
               "2007", "holiday", "friends", "family", "art", "light", "color", "bw", "macro",
               "street", "film", "digital", "happy", "trip", "park", "home", "party")
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "de", "po", "ga", "zu", "ri",
              "be", "no", "fa", "lu", "ke", "mo", "sa")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _choice(rng: np.random.Generator, items) -> str:
    return items[int(rng.integers(len(items)))]


@lru_cache(maxsize=4)
def tag_vocabulary(kind: str) -> tuple[str, ...]:
    """The ``V`` tag words of ``kind`` (mirflickr, nuswide): category words, colour and size
    words, camera-style tags, then made-up filler words (fixed, not drawn from the seed)."""
    words: list[str] = []
    for group in (*TAG_WORDS[kind].values(), *COLOUR_WORDS.values(), *SIZE_WORDS.values(),
                  CAMERA_TAGS):
        words.extend(w for w in group if w not in words)
    rng = make_rng(0, STREAM, kind, "vocabulary")
    while len(words) < VOCAB_SIZE[kind]:
        word = "".join(_choice(rng, _SYLLABLES) for _ in range(int(rng.integers(2, 4))))
        if word not in words:
            words.append(word)
    return tuple(words)


# --------------------------------------------------------------------------- scenes


def _category_weights(n: int) -> np.ndarray:
    w = 1.0 / (np.arange(n) + 3.0)
    return w / w.sum()


def sample_scene(rng: np.random.Generator, n_categories: int, weights: np.ndarray,
                 colours: tuple[str, ...] = tuple(COLOURS)) -> list[dict]:
    """1-4 objects (category index, colour, size, position) at distinct positions, without
    repeated categories."""
    n_obj = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15]))
    cats = rng.choice(n_categories, size=n_obj, replace=False, p=weights)
    positions = rng.choice(list(POSITIONS), size=n_obj, replace=False)
    return [{"category": int(c), "colour": _choice(rng, colours),
             "size": "big" if rng.random() < 0.45 else "small", "position": str(p)}
            for c, p in zip(cats, positions, strict=True)]


class _Pen:
    """Draws on a ``w x w`` mask in unit coordinates (0..1 across the glyph box)."""

    def __init__(self, w: int) -> None:
        self.mask = Image.new("L", (w, w), 0)
        self.draw = ImageDraw.Draw(self.mask)
        self.s = w - 1

    def poly(self, *pts: tuple[float, float], fill: int = 255) -> None:
        self.draw.polygon([(x * self.s, y * self.s) for x, y in pts], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: int = 255) -> None:
        self.draw.rectangle([x0 * self.s, y0 * self.s, x1 * self.s, y1 * self.s], fill=fill)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: int = 255) -> None:
        self.draw.ellipse([x0 * self.s, y0 * self.s, x1 * self.s, y1 * self.s], fill=fill)

    def regular(self, n: int, inner: float = 1.0, r: float = 0.5) -> None:
        """A regular ``n``-gon, or an ``n``-pointed star when ``inner`` < 1."""
        m = n if inner == 1.0 else 2 * n
        k = np.arange(m)
        radii = np.where(k % 2 == 0, r, r * inner) if m > n else np.full(m, r)
        a = k * 2 * np.pi / m - np.pi / 2
        self.poly(*[(0.5 + ri * np.cos(ai), 0.52 + ri * np.sin(ai))
                    for ai, ri in zip(a, radii, strict=True)])

    def half_disc(self) -> None:
        self.draw.pieslice([0, 0.22 * self.s, self.s, 1.22 * self.s], 180, 360, fill=255)


_SHAPES = {
    "disc": lambda p: p.ellipse(0, 0, 1, 1), "square": lambda p: p.rect(0.08, 0.08, 0.92, 0.92),
    "triangle": lambda p: p.poly((0.5, 0.02), (0.98, 0.95), (0.02, 0.95)),
    "star": lambda p: p.regular(5, 0.42, 0.52), "hexagon": lambda p: p.regular(6),
    "diamond": lambda p: p.poly((0.5, 0), (0.88, 0.5), (0.5, 1), (0.12, 0.5)),
    "cross": lambda p: (p.rect(0.33, 0, 0.67, 1), p.rect(0, 0.33, 1, 0.67)),
    "ring": lambda p: (p.ellipse(0, 0, 1, 1), p.ellipse(0.3, 0.3, 0.7, 0.7, 0)),
    "crescent": lambda p: (p.ellipse(0, 0, 1, 1), p.ellipse(0.32, -0.08, 1.25, 0.85, 0)),
    "heart": lambda p: (p.ellipse(0, 0.05, 0.55, 0.55), p.ellipse(0.45, 0.05, 1, 0.55),
                        p.poly((0.02, 0.38), (0.98, 0.38), (0.5, 0.98))),
    "arrow": lambda p: (p.rect(0, 0.36, 0.55, 0.64), p.poly((0.5, 0.08), (1, 0.5), (0.5, 0.92))),
    "pentagon": lambda p: p.regular(5), "semicircle": lambda p: p.half_disc(),
    "frame": lambda p: (p.rect(0, 0, 1, 1), p.rect(0.28, 0.28, 0.72, 0.72, 0)),
    "bar": lambda p: p.rect(0, 0.34, 1, 0.66),
    "bolt": lambda p: p.poly((0.58, 0), (0.12, 0.56), (0.45, 0.56), (0.3, 1), (0.88, 0.4),
                             (0.56, 0.4), (0.78, 0)),
    "trapezoid": lambda p: p.poly((0.25, 0.18), (0.75, 0.18), (1, 0.82), (0, 0.82)),
    "hourglass": lambda p: (p.poly((0.08, 0), (0.92, 0), (0.5, 0.5)),
                            p.poly((0.5, 0.5), (0.92, 1), (0.08, 1))),
    "chevron": lambda p: p.poly((0, 0.15), (0.5, 0.55), (1, 0.15), (1, 0.48), (0.5, 0.88),
                                (0, 0.48)),
    "tee": lambda p: (p.rect(0, 0.04, 1, 0.36), p.rect(0.34, 0.36, 0.66, 1)),
    "ell": lambda p: (p.rect(0.08, 0, 0.4, 1), p.rect(0.4, 0.68, 1, 1)),
    "house": lambda p: (p.rect(0.15, 0.48, 0.85, 1), p.poly((0, 0.52), (0.5, 0), (1, 0.52))),
    "drop": lambda p: (p.ellipse(0.15, 0.35, 0.85, 1),
                       p.poly((0.5, 0), (0.83, 0.58), (0.17, 0.58))),
    "delta": lambda p: (p.poly((0.5, 0.02), (0.98, 0.95), (0.02, 0.95)),
                        p.poly((0.5, 0.4), (0.74, 0.8), (0.26, 0.8), fill=0)),
}


@lru_cache(maxsize=4096)
def _glyph_mask(glyph: str, w: int) -> Image.Image:
    """Silhouette of ``glyph`` in a ``w x w`` 'L' image (255 inside); shared, do not edit."""
    if glyph not in _SHAPES:
        raise ValueError(f"glyph must be one of {list(GLYPHS)}, got {glyph!r}")
    pen = _Pen(w)
    _SHAPES[glyph](pen)
    return pen.mask


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """Darker (factor < 1) or, for dark colours, lighter version of ``colour``."""
    if sum(colour) < 150:
        return tuple(int(min(255, c + 90)) for c in colour)  # type: ignore[return-value]
    return tuple(int(c * factor) for c in colour)  # type: ignore[return-value]


def _fill_layer(rng: np.random.Generator, fill: str, colour: tuple[int, int, int], w: int
                ) -> Image.Image:
    """A ``w x w`` RGB texture: plain colour, dark stripes or contrasting dots."""
    base = np.clip(np.asarray(colour, float) + rng.normal(0, 10, 3), 0, 255).astype(int)
    col = (int(base[0]), int(base[1]), int(base[2]))
    layer = Image.new("RGB", (w, w), col)
    if fill == "plain":
        return layer
    d = ImageDraw.Draw(layer)
    other = _shade(col, 0.45)
    period = max(3, w // 5)
    if fill == "stripes":
        for y in range(period // 2, w, period):
            d.rectangle([0, y, w, y + max(1, period // 2 - 1)], fill=other)
    else:
        r = max(1, period // 4)
        for y in range(period // 2, w, period):
            for x in range(period // 2, w, period):
                d.ellipse([x - r, y - r, x + r, y + r], fill=other)
    return layer


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth low-saturation colour field with a few faint shapes."""
    hue = rng.uniform(0, 1)
    field = np.array([_hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.03, 0.3),
                           rng.uniform(0.35, 0.72)) for _ in range(4)], np.uint8).reshape(2, 2, 3)
    img = Image.fromarray(field, "RGB").resize((size, size), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(img)
    ref = np.asarray(field, float).mean((0, 1))
    for _ in range(int(rng.integers(0, 4))):
        col = tuple(int(v) for v in np.clip(ref + rng.normal(0, 18, 3), 0, 255))
        x0, y0 = rng.uniform(-0.1, 0.9, 2) * size
        ext = rng.uniform(0.1, 0.5, 2) * size
        box = [float(x0), float(y0), float(x0 + ext[0]), float(y0 + ext[1])]
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=col)
    return img


def render_scene(rng: np.random.Generator, objects: list[dict], glyphs: list[str],
                 size: int) -> Image.Image:
    """Draw ``objects`` (from :func:`sample_scene`; ``glyphs[category]`` is the glyph) at
    twice ``size`` and reduce it to ``size x size``. Big objects are drawn first."""
    big = 2 * size
    img = _background(rng, big)
    for obj in sorted(objects, key=lambda o: o["size"] != "big"):
        glyph = glyphs[obj["category"]]
        w = max(6, int(round(SIZES[obj["size"]] * big * rng.uniform(0.9, 1.1))))
        cx, cy = POSITIONS[obj["position"]]
        x = int(round((cx + rng.uniform(-0.04, 0.04)) * big - w / 2))
        y = int(round((cy + rng.uniform(-0.04, 0.04)) * big - w / 2))
        fill = FILLS[GLYPHS.index(glyph) % len(FILLS)]
        img.paste(_fill_layer(rng, fill, COLOURS[obj["colour"]], w), (x, y),
                  _glyph_mask(glyph, w))
    img = img.reduce(2)
    lut = np.minimum(np.arange(256) * rng.uniform(0.9, 1.1), 255).astype(np.uint8)
    return img.point(lut.tolist() * 3)


# --------------------------------------------------------------------------- tags


def sample_tags(rng: np.random.Generator, objects: list[dict], kind: str,
                vocab_index: dict[str, int]) -> np.ndarray:
    """Binary bag of words over the kind's vocabulary (module docstring for the noise)."""
    words = TAG_WORDS[kind]
    concepts = list(words)
    bag = np.zeros(len(vocab_index), dtype=np.uint8)

    def put(word: str) -> None:
        bag[vocab_index[word]] = 1

    for obj in objects:
        options = words[concepts[obj["category"]]]
        if rng.random() >= 0.15:
            for word in rng.choice(options, size=int(rng.integers(1, 3)), replace=False):
                put(str(word))
        if rng.random() < 0.4:
            put(_choice(rng, COLOUR_WORDS[obj["colour"]]))
        if rng.random() < 0.2:
            put(_choice(rng, SIZE_WORDS[obj["size"]]))
    present = {o["category"] for o in objects}
    if rng.random() < 0.2:
        absent = [k for k in range(len(concepts)) if k not in present]
        put(_choice(rng, words[concepts[_choice(rng, absent)]]))
    n_fixed = len(vocab_index) - len(_filler(kind))
    ranks = np.arange(len(vocab_index) - n_fixed)
    p = 1.0 / (ranks + 10.0)
    for k in rng.choice(ranks, size=int(rng.integers(1, 10)), replace=False, p=p / p.sum()):
        bag[n_fixed + int(k)] = 1
    return bag


@lru_cache(maxsize=4)
def _filler(kind: str) -> tuple[str, ...]:
    """The noise words of the vocabulary: camera-style tags and made-up words."""
    vocab = tag_vocabulary(kind)
    return vocab[vocab.index(CAMERA_TAGS[0]):]


# --------------------------------------------------------------------------- captions


def _noun_phrase(rng: np.random.Generator, obj: dict, names: tuple[str, ...]) -> str:
    parts = []
    if rng.random() < 0.4:
        parts.append(_choice(rng, SIZE_WORDS[obj["size"]]))
    if rng.random() < 0.8:
        parts.append(_choice(rng, COLOUR_WORDS[obj["colour"]]))
    parts.append(_choice(rng, CAPTION_CATEGORIES[names[obj["category"]]]))
    det = "one" if rng.random() < 0.1 else _article(parts[0])
    return f"{det} {' '.join(parts)}"


def _relation(rng: np.random.Generator, a: dict, b: dict) -> str:
    (ax, ay), (bx, by) = POSITIONS[a["position"]], POSITIONS[b["position"]]
    options = ["next to", "near", "beside"]
    if ax < bx - 0.1:
        options = ["to the left of", "left of"]
    elif ax > bx + 0.1:
        options = ["to the right of", "right of"]
    elif ay < by - 0.1:
        options = ["above", "over"]
    elif ay > by + 0.1:
        options = ["below", "under", "beneath"]
    return _choice(rng, options)


def _caption(rng: np.random.Generator, objects: list[dict], names: tuple[str, ...]) -> str:
    """One caption mentioning all objects or (half the time) a random subset of them."""
    n = len(objects)
    k = n if rng.random() < 0.5 else int(rng.integers(1, n + 1))
    mention = [objects[i] for i in rng.permutation(n)[:k]]
    nps = [_noun_phrase(rng, o, names) for o in mention]
    where = [_choice(rng, POSITION_PHRASES[o["position"]]) for o in mention]
    patterns = ["np_pos", "pos_there", "picture"]
    if k >= 2:
        patterns += ["relation", "pairs", "relation"]
    pattern = _choice(rng, patterns)
    if pattern == "np_pos":
        text = " and ".join(f"{a} {w}" for a, w in zip(nps, where, strict=True))
    elif pattern == "pos_there":
        text = f"{where[0]} there is {nps[0]}" + "".join(
            f", {w} {a}" for a, w in zip(nps[1:], where[1:], strict=True))
    elif pattern == "picture":
        lead = _choice(rng, ("a picture of", "an image showing", "a photo with", "there is"))
        text = f"{lead} {', '.join(nps[:-1])}{' and ' if k > 1 else ''}{nps[-1]}"
    elif pattern == "relation":
        text = f"{nps[0]} {_relation(rng, mention[0], mention[1])} {nps[1]}" + "".join(
            f" and {a} {w}" for a, w in zip(nps[2:], where[2:], strict=True))
    else:
        text = " and ".join(nps) + f" on a {_choice(rng, ('plain', 'grey', 'soft'))} background"
    return text[0].upper() + text[1:] + "."


def sample_captions(rng: np.random.Generator, make, count: int, max_tries: int = 200
                    ) -> list[str]:
    """``count`` distinct captions from ``make(rng)`` (raises if the grammar cannot)."""
    captions: list[str] = []
    for _ in range(max_tries):
        text = make(rng)
        if text not in captions:
            captions.append(text)
            if len(captions) == count:
                return captions
    raise RuntimeError(f"could not write {count} distinct captions in {max_tries} tries")


# --------------------------------------------------------------------------- MAT files


def _write_v73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 with a 512-byte MAT header, each array stored with its axes
    reversed (MATLAB is column-major), gzip-compressed, with its ``MATLAB_class``."""
    import h5py

    classes = {np.dtype(np.uint8): "uint8", np.dtype(np.float64): "double"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, array in arrays.items():
            stored = np.ascontiguousarray(array.transpose())
            chunks = (1, *stored.shape[1:]) if stored.ndim == 4 else True
            ds = f.create_dataset(name, data=stored, compression="gzip", compression_opts=4,
                                  chunks=chunks)
            ds.attrs["MATLAB_class"] = np.bytes_(classes[array.dtype])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, written by irbook.data.synth, " \
             b"HDF5 schema 1.00 ."
    block = header.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(block.ljust(512, b"\x00"))


def _write_v5(path: Path, name: str, array: np.ndarray) -> None:
    """A compressed MATLAB v5 file holding ``name`` (creation time in the header replaced by
    a fixed text, so that the same content gives the same bytes)."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {name: array}, do_compression=True)
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by irbook.data.synth".ljust(116)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- tagged writers


def _tagged_arrays(kind: str, seed: int, n_pairs: int, image_size: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Images (N, H, W, 3) uint8, labels (N, C) and tags (N, V) float64, scene list."""
    concepts = TAG_LABELS[kind]
    glyphs = list(GLYPHS[: len(concepts)])
    weights = _category_weights(len(concepts))
    order = make_rng(seed, STREAM, kind, "frequency").permutation(len(concepts))
    weights = weights[np.argsort(order)]  # which concept is frequent depends on the seed
    vocab_index = {w: i for i, w in enumerate(tag_vocabulary(kind))}
    images = np.empty((n_pairs, image_size, image_size, 3), np.uint8)
    labels = np.zeros((n_pairs, len(concepts)))
    tags = np.zeros((n_pairs, len(vocab_index)))
    scenes = []
    for i in range(n_pairs):
        objects = sample_scene(make_rng(seed, STREAM, kind, "scene", i), len(concepts), weights)
        images[i] = np.asarray(render_scene(make_rng(seed, STREAM, kind, "render", i), objects,
                                            glyphs, image_size))
        labels[i, [o["category"] for o in objects]] = 1
        tags[i] = sample_tags(make_rng(seed, STREAM, kind, "tags", i), objects, kind,
                              vocab_index)
        scenes.append(objects)
    return images, labels, tags, scenes


def _tagged_meta(kind: str, seed: int, scenes: list) -> dict:
    concepts = TAG_LABELS[kind]
    return {"kind": kind, "seed": seed, "generator_version": GENERATOR_VERSION,
            "categories": [{"label": c, "glyph": GLYPHS[k], "words": list(TAG_WORDS[kind][c])}
                           for k, c in enumerate(concepts)],
            "tag_vocabulary": list(tag_vocabulary(kind)), "objects": scenes}


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def write_mirflickr(root: str | PathLike[str], *, seed: int, n_pairs: int, image_size: int
                    ) -> Path:
    """Write ``<root>/MIRFLICKR-25K/FLICKR-25K.mat`` (v7.3: ``images`` H x W x 3 x N uint8,
    ``LAll`` N x 24, ``YAll`` N x 1386 double, in MATLAB's orientation). Returns ``root``."""
    _check_sizes(n_pairs=n_pairs, image_size=image_size)
    images, labels, tags, scenes = _tagged_arrays("mirflickr", seed, n_pairs, image_size)
    folder = Path(root) / FOLDERS["mirflickr"]
    _write_v73(folder / MIRFLICKR_FILE, {"images": images.transpose(1, 2, 3, 0),
                                         "LAll": labels, "YAll": tags})
    write_json(_tagged_meta("mirflickr", seed, scenes), folder / "synth_meta.json")
    return Path(root)


def write_nuswide(root: str | PathLike[str], *, seed: int, n_pairs: int, image_size: int
                  ) -> Path:
    """Write ``<root>/NUS-WIDE/nus-wide-tc21-{iall,lall,yall}.mat``: ``IAll`` (v7.3,
    H x W x 3 x N uint8), ``LAll`` (v5, N x 21) and ``YAll`` (v5, N x 1000). Returns
    ``root``."""
    _check_sizes(n_pairs=n_pairs, image_size=image_size)
    images, labels, tags, scenes = _tagged_arrays("nuswide", seed, n_pairs, image_size)
    folder = Path(root) / FOLDERS["nuswide"]
    _write_v73(folder / NUSWIDE_FILES["IAll"], {"IAll": images.transpose(1, 2, 3, 0)})
    _write_v5(folder / NUSWIDE_FILES["LAll"], "LAll", labels)
    _write_v5(folder / NUSWIDE_FILES["YAll"], "YAll", tags)
    write_json(_tagged_meta("nuswide", seed, scenes), folder / "synth_meta.json")
    return Path(root)


# --------------------------------------------------------------------------- Karpathy writer


def _karpathy_names(rng: np.random.Generator, name: str, n: int, splits: list[str]
                    ) -> list[dict]:
    """File names (and COCO folder/ids) in the style of each dataset."""
    ids = rng.choice(np.arange(10**6, 10**7), size=n, replace=False)
    out = []
    for i, (split, k) in enumerate(zip(splits, ids, strict=True)):
        if name == "coco":
            sub = "train2014" if split == "train" else "val2014"
            out.append({"filepath": sub, "filename": f"COCO_{sub}_{int(k):012d}.jpg",
                        "cocoid": int(k)})
        elif name == "flickr30k":
            out.append({"filename": f"{1000 * int(k) + i % 1000}.jpg"})
        else:
            out.append({"filename": f"{int(k)}_{int(k) * 7919 % 16**10:010x}.jpg"})
    return out


def write_karpathy(root: str | PathLike[str], name: str, *, seed: int, train: int, val: int,
                   test: int, image_size: int, restval: int = 0) -> Path:
    """Write ``<root>/<Flickr8K|Flickr30K|COCO>/dataset_<name>.json`` in Karpathy's format and
    the JPEG images in the dataset's folder (``LAYOUTS``); splits interleaved in a seeded
    order; COCO: ``restval`` of the ``train`` images are val2014 images with split
    ``restval``. Returns ``root``."""
    if name not in KARPATHY_DATASETS:
        raise ValueError(f"name must be one of {list(KARPATHY_DATASETS)}, got {name!r}")
    _check_sizes(train=train, val=val, test=test, image_size=image_size)
    if not 0 <= restval < train:
        raise ValueError(f"restval must be in 0..{train - 1}, got {restval}")
    folder = Path(root) / FOLDERS[name]
    rng = make_rng(seed, STREAM, name, "layout")
    splits = ["train"] * (train - restval) + ["restval"] * restval + ["val"] * val \
        + ["test"] * test
    splits = [splits[k] for k in rng.permutation(len(splits))]
    names = _karpathy_names(rng, name, len(splits), splits)
    glyphs = list(CAPTION_CATEGORIES)
    weights = _category_weights(len(glyphs))
    images, scenes, sentid = [], [], 0
    for i, (split, file) in enumerate(zip(splits, names, strict=True)):
        objects = sample_scene(make_rng(seed, STREAM, name, "scene", i), len(glyphs), weights)
        img = render_scene(make_rng(seed, STREAM, name, "render", i), objects, glyphs,
                           image_size)
        sub = file.get("filepath", KARPATHY_IMAGES[name])
        save_jpeg(img, folder / sub / file["filename"])
        raws = sample_captions(make_rng(seed, STREAM, name, "captions", i),
                               lambda r, o=objects: _caption(r, o, tuple(glyphs)), 5)
        sentences = [{"tokens": tokenize(raw), "raw": raw, "imgid": i, "sentid": sentid + j}
                     for j, raw in enumerate(raws)]
        images.append({**file, "imgid": i, "split": split, "sentences": sentences,
                       "sentids": [s["sentid"] for s in sentences]})
        sentid += len(sentences)
        scenes.append(objects)
    write_json({"images": images, "dataset": name}, folder / KARPATHY_JSON[name])
    write_json({"kind": name, "seed": seed, "generator_version": GENERATOR_VERSION,
                "categories": [{"glyph": g, "words": list(CAPTION_CATEGORIES[g])}
                               for g in glyphs], "objects": scenes},
               folder / "synth_meta.json")
    return Path(root)


# --------------------------------------------------------------------------- PEDES writer

UPPER = {"shirt": ("shirt", "t-shirt", "top", "tee"),
         "jacket": ("jacket", "hoodie", "sweater"),
         "coat": ("coat", "overcoat", "long coat")}
LOWER = {"trousers": ("trousers", "pants", "slacks"), "shorts": ("shorts", "short pants"),
         "skirt": ("skirt", "knee length skirt")}
BAGS = {"none": (), "backpack": ("backpack", "rucksack", "school bag"),
        "handbag": ("handbag", "purse", "shoulder bag")}
PERSON = {"man": ("man", "guy", "gentleman", "male pedestrian"),
          "woman": ("woman", "lady", "girl", "female pedestrian")}
HAIR = {"black": (25, 22, 20), "brown": (100, 62, 35), "blonde": (222, 190, 110),
        "grey": (160, 160, 160)}
CLOTH_COLOURS = {**COLOURS, "grey": (128, 128, 130), "brown": (120, 75, 40),
                 "pink": (240, 140, 185)}
SHOES = {"black": ("shoes", "boots"), "white": ("sneakers", "trainers"),
         "brown": ("shoes", "boots")}
SKIN = ((238, 200, 170), (205, 155, 115), (150, 100, 70), (95, 62, 40))


def sample_identity(rng: np.random.Generator) -> dict:
    """The fixed look of one person."""
    colours = list(CLOTH_COLOURS)
    gender = _choice(rng, list(PERSON))
    lower = _choice(rng, ["trousers", "trousers", "shorts"] + (["skirt"] if gender == "woman"
                                                               else []))
    return {"gender": gender, "hair": _choice(rng, list(HAIR)),
            "hair_long": bool(rng.random() < (0.7 if gender == "woman" else 0.15)),
            "upper": _choice(rng, list(UPPER)), "upper_colour": _choice(rng, colours),
            "lower": lower, "lower_colour": _choice(rng, colours),
            "shoes": _choice(rng, list(SHOES)), "bag": _choice(rng, list(BAGS)),
            "bag_colour": _choice(rng, colours), "skin": int(rng.integers(len(SKIN)))}


def _person_parts(p: dict, stride: float) -> list[tuple[str, tuple, tuple]]:
    """Drawing list (kind, box or polygon in unit figure coordinates, colour); x in [-0.5,
    0.5] around the figure's axis, y in [0, 1] from head top to soles; bag on the +x side."""
    skin, hair = SKIN[p["skin"]], HAIR[p["hair"]]
    up, low = CLOTH_COLOURS[p["upper_colour"]], CLOTH_COLOURS[p["lower_colour"]]
    shoe = {"black": (25, 25, 25), "white": (240, 240, 240), "brown": (110, 70, 35)}[p["shoes"]]
    parts: list[tuple[str, tuple, tuple]] = []
    if p["hair_long"]:
        parts.append(("rect", (-0.1, 0.02, 0.1, 0.26), hair))
    if p["bag"] == "backpack":
        parts.append(("rect", (0.1, 0.19, 0.22, 0.45), CLOTH_COLOURS[p["bag_colour"]]))
    legs = skin if p["lower"] in ("shorts", "skirt") else low
    for side in (-1, 1):
        x = side * (0.06 + stride)
        parts.append(("rect", (x - 0.055, 0.52, x + 0.055, 0.94), legs))
        parts.append(("rect", (x - 0.065, 0.93, x + 0.075, 0.99), shoe))
        sleeve_end = 0.3 if p["upper"] == "shirt" else 0.5
        parts.append(("rect", (side * 0.2 - 0.035, 0.19, side * 0.2 + 0.035, 0.52), skin))
        parts.append(("rect", (side * 0.2 - 0.04, 0.18, side * 0.2 + 0.04, sleeve_end), up))
    if p["lower"] == "shorts":
        parts.append(("rect", (-0.13, 0.5, 0.13, 0.72), low))
    elif p["lower"] == "skirt":
        parts.append(("poly", ((-0.13, 0.5), (0.13, 0.5), (0.2, 0.76), (-0.2, 0.76)), low))
    end = 0.63 if p["upper"] == "coat" else 0.54  # a coat still shows shorts and skirts
    parts.append(("rect", (-0.15, 0.17, 0.15, end), up))
    parts.append(("ellipse", (-0.075, 0.02, 0.075, 0.17), skin))
    parts.append(("ellipse", (-0.08, 0.0, 0.08, 0.09), hair))
    if p["bag"] == "handbag":
        bag = CLOTH_COLOURS[p["bag_colour"]]
        parts.append(("line", (0.12, 0.19, 0.25, 0.5), bag))
        parts.append(("rect", (0.2, 0.46, 0.32, 0.6), bag))
    return parts


def render_person(rng: np.random.Generator, p: dict, size: int) -> Image.Image:
    """One photo of identity ``p``: new background, position, scale, stride and facing."""
    big = 2 * size
    img = _background(rng, big)
    d = ImageDraw.Draw(img)
    ground = tuple(int(v) for v in np.clip(rng.normal(110, 30, 3), 40, 200))
    d.rectangle([0, int(big * rng.uniform(0.75, 0.9)), big, big], fill=ground)
    height = big * rng.uniform(0.82, 0.95)
    top = rng.uniform(0.02, 0.98 - height / big) * big
    axis = big * (0.5 + rng.uniform(-0.1, 0.1))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    jitter = rng.normal(0, 8, 3)

    def xy(x: float, y: float) -> tuple[float, float]:
        return axis + flip * x * height, top + y * height

    for kind, geo, colour in _person_parts(p, stride=float(rng.uniform(0.0, 0.04))):
        col = tuple(int(v) for v in np.clip(np.asarray(colour) + jitter, 0, 255))
        if kind == "poly":
            d.polygon([xy(*pt) for pt in geo], fill=col)
            continue
        (x0, y0), (x1, y1) = xy(geo[0], geo[1]), xy(geo[2], geo[3])
        box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        if kind == "line":
            d.line([(x0, y0), (x1, y1)], fill=col, width=max(1, big // 40))
        else:
            (d.rectangle if kind == "rect" else d.ellipse)(box, fill=col)
    return img.reduce(2)


def _pedes_caption(rng: np.random.Generator, p: dict) -> str:
    """One description of identity ``p``'s clothing (random parts left out)."""
    who = _choice(rng, PERSON[p["gender"]])
    pron = "he" if p["gender"] == "man" else "she"
    up = f"{_choice(rng, COLOUR_WORDS[p['upper_colour']])} {_choice(rng, UPPER[p['upper']])}"
    low = f"{_choice(rng, COLOUR_WORDS[p['lower_colour']])} {_choice(rng, LOWER[p['lower']])}"
    hair = f"{'long' if p['hair_long'] else 'short'} {p['hair']} hair"
    shoes = f"{_choice(rng, COLOUR_WORDS[p['shoes']])} {_choice(rng, SHOES[p['shoes']])}"
    pattern = int(rng.integers(3))
    if pattern == 0:
        first = f"the {who} is wearing {_article(up)} {up} and {low}"
    elif pattern == 1:
        first = f"{_article(who)} {who} in {_article(up)} {up}, {low} and {shoes}"
    else:
        first = f"this {who} wears {low} with {_article(up)} {up}"
    extra = []
    if p["bag"] != "none" and rng.random() < 0.8:
        bag = f"{_choice(rng, COLOUR_WORDS[p['bag_colour']])} {_choice(rng, BAGS[p['bag']])}"
        extra.append(f"{pron} carries {_article(bag)} {bag}")
    if rng.random() < 0.6:
        extra.append(f"{pron} has {hair}")
    if pattern != 1 and rng.random() < 0.4:
        extra.append(f"{pron} is wearing {shoes}")
    order = [extra[k] for k in rng.permutation(len(extra))]
    text = ". ".join([first, *order])
    return text[0].upper() + text[1:] + "."


def write_pedes(root: str | PathLike[str], *, seed: int, train_ids: int, val_ids: int,
                test_ids: int, image_size: int) -> Path:
    """Write ``<root>/CUHK-PEDES/reid_raw.json`` (``{split, file_path, id, captions}`` per
    image, identities 1-based in a seeded order of splits) and ``imgs/synth/*.jpg``.
    Returns ``root``."""
    _check_sizes(train_ids=train_ids, val_ids=val_ids, test_ids=test_ids, image_size=image_size)
    folder = Path(root) / FOLDERS["pedes"]
    id_splits = ["train"] * train_ids + ["val"] * val_ids + ["test"] * test_ids
    order = make_rng(seed, STREAM, "pedes", "layout").permutation(len(id_splits))
    entries, meta, image_no = [], [], 0
    for pid in range(len(id_splits)):
        ident = sample_identity(make_rng(seed, STREAM, "pedes", "identity", pid))
        n_images = int(make_rng(seed, STREAM, "pedes", "count", pid).integers(2, 5))
        for k in range(n_images):
            rel = f"synth/p{pid + 1:05d}_s{image_no + 1:06d}.jpg"
            img = render_person(make_rng(seed, STREAM, "pedes", "render", pid, k), ident,
                                image_size)
            save_jpeg(img, folder / PEDES_IMAGES / rel)
            caps = sample_captions(make_rng(seed, STREAM, "pedes", "captions", pid, k),
                                   lambda r, p=ident: _pedes_caption(r, p), 2)
            entries.append({"split": id_splits[order[pid]], "file_path": rel, "id": pid + 1,
                            "captions": caps})
            image_no += 1
        meta.append(ident)
    write_json(entries, folder / PEDES_JSON)
    write_json({"kind": "pedes", "seed": seed, "generator_version": GENERATOR_VERSION,
                "identities": meta}, folder / "synth_meta.json")
    return Path(root)


# --------------------------------------------------------------------------- cache


def _writer(kind: str, seed: int, preset: dict):
    if kind == "mirflickr":
        return lambda folder: write_mirflickr(folder, seed=seed, **preset)
    if kind == "nuswide":
        return lambda folder: write_nuswide(folder, seed=seed, **preset)
    if kind == "pedes":
        return lambda folder: write_pedes(folder, seed=seed, **preset)
    return lambda folder: write_karpathy(folder, kind, seed=seed, **preset)


def ensure_crossmodal(root: str | PathLike[str], kinds=CROSSMODAL_KINDS, *, scale: str,
                      seed: int) -> Path:
    """Write each of ``kinds`` (a subset of :data:`CROSSMODAL_KINDS`) at ``scale`` (smoke,
    demo) under ``root`` in its official layout, unless the marker of that kind records the
    same configuration. Returns ``root`` for the loaders of :mod:`irbook.data.crossmodal`."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = [k for k in kinds if k not in CROSSMODAL_KINDS]
    if unknown:
        raise ValueError(f"kinds must be among {list(CROSSMODAL_KINDS)}, got {unknown}")
    if scale not in CROSSMODAL_SCALES:
        raise ValueError(f"scale must be one of {sorted(CROSSMODAL_SCALES)}, got {scale!r}")
    make_rng(seed)  # validates the seed
    root = Path(root)
    for kind in kinds:
        preset = {k: v for k, v in CROSSMODAL_SCALES[scale][kind].items()
                  if k not in SPLIT_HINTS}
        name = f"crossmodal_{kind}"
        config = {"kind": name, "version": GENERATOR_VERSION, "seed": seed, "scale": scale,
                  **preset}
        ensure_generated(root, name, config, (FOLDERS[kind],), _writer(kind, seed, preset))
    return root
