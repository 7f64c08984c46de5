"""Synthetic fine-grained datasets (chapters 5-7) written in the official layouts of CUB-200-2011,
Stanford Dogs, CIFAR-100 and Stanford Cars, so that :mod:`irbook.data.finegrained` reads them
unchanged. The animals (birds, dogs) are drawn here; the cars of chapter 7 in
:mod:`irbook.data.synth.vehicles`, with the same scheme of classes grouped in makes.

What makes them fine-grained:

- Classes come in **species** (super-classes) of ``classes_per_species`` consecutive classes,
  as related species are neighbours in CUB's official order. A species fixes the coarse look:
  body plan (a bird for CUB, a dog for Stanford Dogs, either for CIFAR-100), proportions,
  body/head/wing colours.
- Five small **details** exist on every animal: cheek/eye ``patch`` colour, number of
  wing/flank ``bars``, ``tail`` tip colour, breast ``marking`` (plain, spots, band) and
  ``crown``/ear colour. Each species uses three of them, its *diagnostic* details, to tell its
  classes apart (any two sibling classes differ in at least two of the three where possible);
  the other two are drawn afresh for every image. So a network must look at small parts, and
  training on new species, whose diagnostic details differ, teaches invariance to details the
  old species need -- the forgetting of chapters 5-6.
- Nuisance: left/right facing, rotation, scale, position, cluttered background
  (:func:`irbook.data.synth.patterns.make_background`), twigs in front, colour jitter of the
  body, lighting, blur and noise.

Images are rendered at twice the output size (the animal at four times) and reduced with a box
filter. Every image has its own generator ``make_rng(seed, "finegrained", dataset, "image",
class, index)``, so the same seed gives byte-identical files. Each dataset folder also gets
``synth_meta.json`` (the species and diagnostic details of every class), which no loader needs.
"""

from __future__ import annotations

import io
import itertools
import math
import pickle
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from irbook.data.finegrained import FINEGRAINED_DATASETS, FOLDERS
from irbook.data.synth.instance import require_positive
from irbook.data.synth.patterns import ViewParams, _hsv, _photometric, make_background, make_rng
from irbook.data.synth.store import ensure_generated, save_jpeg, write_json

GENERATOR_VERSION = 1
CARS_GENERATOR_VERSION = 1  # the cars of irbook.data.synth.vehicles: bump when they change
ANIMAL_DATASETS = ("cub200", "dogs", "cifar100")
STREAM = "finegrained"
Colour = tuple[int, int, int]

SCALES: dict[str, dict[str, dict[str, int]]] = {
    "smoke": {
        "cub200": {"n_classes": 16, "per_class": 10, "image_size": 48},
        "dogs": {"n_classes": 16, "per_class": 10, "image_size": 48},
        "cifar100": {"n_classes": 20, "per_class_train": 10, "per_class_test": 5},
        "cars": {"n_classes": 16, "per_class": 10, "image_size": 48},
    },
    "demo": {
        "cub200": {"n_classes": 40, "per_class": 100, "image_size": 64},
        "dogs": {"n_classes": 40, "per_class": 100, "image_size": 64},
        "cifar100": {"n_classes": 40, "per_class_train": 40, "per_class_test": 25},
        "cars": {"n_classes": 40, "per_class": 100, "image_size": 64},
    },
}
CLASSES_PER_SPECIES = {"cub200": 4, "dogs": 4, "cifar100": 5}  # CIFAR-100: 5 per superclass
MAX_CLASSES_PER_SPECIES = 8

DETAILS: dict[str, tuple[str, ...]] = {
    "patch": ("red", "yellow", "white", "blue"),
    "bars": ("0", "1", "2", "3"),
    "tail": ("dark", "white", "orange"),
    "marking": ("plain", "spotted", "banded"),
    "crown": ("plain", "black", "red"),
}
N_DIAGNOSTIC = 3
DETAIL_COLOURS: dict[str, Colour] = {
    "red": (205, 40, 45), "yellow": (238, 206, 48), "white": (242, 242, 236),
    "blue": (45, 95, 210), "dark": (28, 26, 30), "orange": (232, 128, 32),
    "black": (22, 22, 26),
}
GENERA = {
    "bird": ("Warbler", "Finch", "Tern", "Wren", "Vireo", "Tanager", "Grebe", "Auklet",
             "Oriole", "Sparrow"),
    "dog": ("Terrier", "Spaniel", "Hound", "Setter", "Collie", "Pinscher", "Retriever",
            "Schnauzer", "Mastiff", "Sheepdog"),
}


# --------------------------------------------------------------------------- class design


@dataclass(frozen=True, eq=False)
class Species:
    """Coarse template shared by the classes of one species."""

    index: int
    plan: str  # "bird" or "dog"
    genus: str
    colours: dict[str, Colour]
    geometry: dict[str, float]
    diagnostic: tuple[str, ...]  # the details that separate its classes


@dataclass(frozen=True, eq=False)
class FineClass:
    """One class: a species and a value for each of its diagnostic details."""

    index: int
    species: Species
    details: dict[str, str]  # diagnostic detail -> value
    name: str


def _contrast_colour(rng: np.random.Generator, against: Colour) -> Colour:
    """A light colour on a dark part, a dark one on a light part."""
    lightness = sum(against) / (3 * 255)
    value = rng.uniform(0.82, 0.95) if lightness < 0.5 else rng.uniform(0.08, 0.2)
    return _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.25), value)


GOLDEN_HUE_STEP = 0.381966  # consecutive species get well-separated body hues


def _sample_species(rng: np.random.Generator, index: int, plan: str, hue: float) -> Species:
    body = _hsv(hue, rng.uniform(0.2, 0.65), rng.uniform(0.35, 0.8))
    head = _hsv(hue + rng.uniform(-0.3, 0.3), rng.uniform(0.15, 0.65), rng.uniform(0.3, 0.8))
    wing = _hsv(hue + rng.uniform(-0.15, 0.15), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.7))
    colours = {
        "body": body, "head": head, "wing": wing,
        "beak": _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.9)),
        "legs": _hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.4), rng.uniform(0.15, 0.4)),
        "ears": _hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)),
        "bars": _contrast_colour(rng, wing if plan == "bird" else body),
        "marking": _contrast_colour(rng, body),
    }
    if plan == "bird":
        geometry = {
            "body_len": rng.uniform(0.42, 0.52), "aspect": rng.uniform(1.5, 2.1),
            "head_r": rng.uniform(0.085, 0.12), "head_dx": rng.uniform(0.75, 0.95),
            "head_dy": rng.uniform(0.45, 0.85), "beak_len": rng.uniform(0.04, 0.1),
            "tail_len": rng.uniform(0.1, 0.18), "tail_spread": rng.uniform(0.03, 0.08),
            "tail_drop": rng.uniform(-0.05, 0.08), "leg_len": rng.uniform(0.05, 0.1),
        }
    else:
        geometry = {
            "body_len": rng.uniform(0.45, 0.55), "aspect": rng.uniform(2.0, 2.6),
            "head_r": rng.uniform(0.08, 0.105), "neck": rng.uniform(0.4, 0.9),
            "snout_len": rng.uniform(0.04, 0.09), "tail_len": rng.uniform(0.1, 0.18),
            "leg_len": rng.uniform(0.12, 0.2), "floppy_ears": float(rng.random() < 0.5),
        }
    diagnostic = tuple(sorted(rng.choice(list(DETAILS), N_DIAGNOSTIC, replace=False),
                              key=list(DETAILS).index))
    genera = GENERA[plan]
    genus = genera[index % len(genera)] + (str(index // len(genera) + 1)
                                           if index >= len(genera) else "")
    return Species(index, plan, genus, colours, geometry, tuple(str(d) for d in diagnostic))


def _class_codes(rng: np.random.Generator, kinds: tuple[str, ...], count: int,
                 table: dict[str, tuple[str, ...]] = DETAILS) -> list[tuple[int, ...]]:
    """``count`` distinct value codes for ``kinds`` (keys of ``table``, the values of each
    detail), pairwise differing in at least two details when a greedy pass over a random order
    finds that many, else in at least one."""
    codes = list(itertools.product(*(range(len(table[k])) for k in kinds)))
    order = [codes[i] for i in rng.permutation(len(codes))]
    for min_distance in (2, 1):
        chosen: list[tuple[int, ...]] = []
        for code in order:
            if all(sum(a != b for a, b in zip(code, c, strict=True)) >= min_distance
                   for c in chosen):
                chosen.append(code)
                if len(chosen) == count:
                    return chosen
    raise ValueError(f"cannot make {count} distinct classes from details {kinds}")


def _class_name(species: Species, details: dict[str, str]) -> str:
    words = {
        "patch": lambda v: f"{v}_cheek" if species.plan == "bird" else f"{v}_eyed",
        "bars": lambda v: f"{v}bar",
        "tail": lambda v: f"{v}_tail",
        "marking": lambda v: v,
        "crown": lambda v: (f"{v}_crown" if species.plan == "bird" else f"{v}_eared"),
    }
    parts = [words[k](v) for k, v in details.items()]
    return "_".join([p.capitalize() if i == 0 else p for i, p in enumerate(parts)]
                    + [species.genus])


def design_classes(seed: int, dataset: str, n_classes: int,
                   classes_per_species: int | None = None) -> list[FineClass]:
    """The ``n_classes`` classes of synthetic ``dataset`` (an animal set; the cars are
    designed by :func:`irbook.data.synth.vehicles.design_cars`): class ``c`` belongs to species
    ``c // classes_per_species``; a class never depends on how many images are drawn."""
    if dataset not in ANIMAL_DATASETS:
        raise ValueError(f"dataset must be one of {list(ANIMAL_DATASETS)}, got {dataset!r}")
    per = CLASSES_PER_SPECIES[dataset] if classes_per_species is None else classes_per_species
    require_positive(n_classes=n_classes, classes_per_species=per)
    if per > MAX_CLASSES_PER_SPECIES:
        raise ValueError(f"classes_per_species must be at most {MAX_CLASSES_PER_SPECIES}, "
                         f"got {per}")
    classes = []
    first_hue = float(make_rng(seed, STREAM, dataset, "hue").uniform(0, 1))
    for s in range(math.ceil(n_classes / per)):
        rng = make_rng(seed, STREAM, dataset, "species", s)
        plan = {"cub200": "bird", "dogs": "dog"}.get(dataset) or str(rng.choice(["bird", "dog"]))
        hue = (first_hue + GOLDEN_HUE_STEP * s + rng.uniform(-0.04, 0.04)) % 1.0
        species = _sample_species(rng, s, plan, hue)
        count = min(per, n_classes - s * per)
        for k, code in enumerate(_class_codes(rng, species.diagnostic, count)):
            details = {kind: DETAILS[kind][v] for kind, v in zip(species.diagnostic, code,
                                                                   strict=True)}
            classes.append(FineClass(s * per + k, species, details,
                                     _class_name(species, details)))
    return classes


# --------------------------------------------------------------------------- drawing


def _jitter(rng: np.random.Generator, colour: Colour, std: float) -> tuple[int, int, int, int]:
    c = np.clip(np.asarray(colour, float) + rng.normal(0, std, 3), 0, 255).round()
    return (int(c[0]), int(c[1]), int(c[2]), 255)


def _solid(colour: Colour) -> tuple[int, int, int, int]:
    return (*colour, 255)


def _ellipse_half_height(x: float, cx: float, a: float, b: float) -> float:
    t = min(abs(x - cx) / a, 1.0)
    return b * math.sqrt(1 - t * t)


def _draw_marking(d: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, colour,
                  cx: float, cy: float, a: float, b: float, u: float) -> None:
    """Breast marking on the front lower body of the ellipse (cx, cy, a, b)."""
    if kind == "spotted":
        r = 0.03 * u
        for _ in range(5):
            x = cx + a * rng.uniform(0.2, 0.65)
            y = cy + _ellipse_half_height(x, cx, a, b) * rng.uniform(-0.1, 0.7)
            d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif kind == "banded":
        x = cx + a * rng.uniform(0.4, 0.5)
        h = _ellipse_half_height(x, cx, a, b)
        d.line([(x, cy - 0.9 * h), (x + 0.1 * a, cy + 0.95 * h)], fill=colour,
               width=round(0.055 * u))


def _draw_bars(d: ImageDraw.ImageDraw, n: int, colour, cx: float, cy: float, a: float,
               b: float, u: float) -> None:
    """``n`` vertical bars across the ellipse (cx, cy, a, b)."""
    for k in range(n):
        x = cx + (k - (n - 1) / 2) * 0.42 * a
        h = 0.85 * _ellipse_half_height(x, cx, a, b)
        d.line([(x, cy - h), (x, cy + h)], fill=colour, width=round(0.04 * u))


def _tail_segment(start, end, t0: float):
    return tuple(s + t0 * (e - s) for s, e in zip(start, end, strict=True))


def _draw_bird(d, rng, sp: Species, det: dict[str, str], u: float) -> None:
    g = {k: v * rng.uniform(0.96, 1.04) for k, v in sp.geometry.items()}
    col = {k: _jitter(rng, c, 9) for k, c in sp.colours.items()}
    cx, cy = 0.5 * u, 0.52 * u
    a = g["body_len"] * u / 2
    b = a / g["aspect"]
    # tail: a wedge behind the body, its last 45% in the tail-tip colour
    root_top, root_bot = (cx - 0.7 * a, cy - 0.35 * b), (cx - 0.7 * a, cy + 0.25 * b)
    end_x, end_y = cx - a - g["tail_len"] * u, cy + g["tail_drop"] * u
    end_top, end_bot = (end_x, end_y - g["tail_spread"] * u), (end_x, end_y + g["tail_spread"] * u)
    d.polygon([root_top, end_top, end_bot, root_bot], fill=col["wing"])
    d.polygon([_tail_segment(root_top, end_top, 0.55), end_top, end_bot,
               _tail_segment(root_bot, end_bot, 0.55)],
              fill=_jitter(rng, DETAIL_COLOURS[det["tail"]], 5))
    for dx in (-0.05, 0.15):
        x = cx + dx * a
        d.line([(x, cy + 0.8 * b), (x + 0.03 * u, cy + b + g["leg_len"] * u)], fill=col["legs"],
               width=round(0.015 * u))
    d.ellipse([cx - a, cy - b, cx + a, cy + b], fill=col["body"])
    _draw_marking(d, rng, det["marking"], col["marking"], cx, cy, a, b, u)
    wx, wy, wa, wb = cx - 0.15 * a, cy - 0.2 * b, 0.6 * a, 0.55 * b
    d.ellipse([wx - wa, wy - wb, wx + wa, wy + wb], fill=col["wing"])
    _draw_bars(d, int(det["bars"]), col["bars"], wx - 0.1 * wa, wy, wa, wb, u)
    r = g["head_r"] * u
    hx, hy = cx + g["head_dx"] * a, cy - g["head_dy"] * b
    d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=col["head"])
    if det["crown"] != "plain":
        d.pieslice([hx - r, hy - r, hx + r, hy + r], 200, 340,
                   fill=_jitter(rng, DETAIL_COLOURS[det["crown"]], 5))
    px, py = hx - 0.2 * r + rng.normal(0, 0.04) * r, hy + 0.3 * r + rng.normal(0, 0.04) * r
    d.ellipse([px - 0.55 * r, py - 0.4 * r, px + 0.55 * r, py + 0.4 * r],
              fill=_jitter(rng, DETAIL_COLOURS[det["patch"]], 5))
    e = 0.16 * r
    d.ellipse([hx + 0.35 * r - e, hy - 0.2 * r - e, hx + 0.35 * r + e, hy - 0.2 * r + e],
              fill=(18, 18, 20, 255))
    d.polygon([(hx + 0.8 * r, hy - 0.3 * r), (hx + 0.8 * r, hy + 0.3 * r),
               (hx + r + g["beak_len"] * u, hy + 0.1 * r)], fill=col["beak"])


def _draw_dog(d, rng, sp: Species, det: dict[str, str], u: float) -> None:
    g = {k: v * rng.uniform(0.96, 1.04) for k, v in sp.geometry.items()}
    col = {k: _jitter(rng, c, 9) for k, c in sp.colours.items()}
    cx, cy = 0.47 * u, 0.5 * u
    a = g["body_len"] * u / 2
    b = a / g["aspect"]
    leg_w = round(0.045 * u)
    for dx in (-0.75, -0.5, 0.5, 0.75):
        x = cx + dx * a
        d.line([(x, cy + 0.3 * b), (x, cy + b + g["leg_len"] * u)], fill=col["legs"],
               width=leg_w)
    t0 = (cx - 0.9 * a, cy - 0.4 * b)
    t1 = (cx - a - 0.6 * g["tail_len"] * u, cy - 0.4 * b - g["tail_len"] * u)
    tail_w = round(0.035 * u)
    d.line([t0, t1], fill=col["body"], width=tail_w)
    d.line([_tail_segment(t0, t1, 0.55), t1], width=tail_w,
           fill=_jitter(rng, DETAIL_COLOURS[det["tail"]], 5))
    r = g["head_r"] * u
    hx, hy = cx + 0.95 * a, cy - b - g["neck"] * r
    d.line([(cx + 0.7 * a, cy - 0.2 * b), (hx, hy)], fill=col["body"], width=round(1.2 * r))
    d.ellipse([cx - a, cy - b, cx + a, cy + b], fill=col["body"])
    _draw_marking(d, rng, det["marking"], col["marking"], cx, cy, a, b, u)
    _draw_bars(d, int(det["bars"]), col["bars"], cx - 0.1 * a, cy, 0.8 * a, b, u)
    ear = col["ears"] if det["crown"] == "plain" else _jitter(rng, DETAIL_COLOURS[det["crown"]], 5)
    d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=col["head"])
    d.ellipse([hx + 0.4 * r, hy - 0.15 * r, hx + r + g["snout_len"] * u, hy + 0.6 * r],
              fill=col["head"])
    n = 0.12 * r
    nx, ny = hx + r + g["snout_len"] * u - n, hy + 0.1 * r
    d.ellipse([nx - n, ny - n, nx + n, ny + n], fill=(18, 18, 20, 255))
    px, py = hx + 0.15 * r + rng.normal(0, 0.04) * r, hy - 0.2 * r + rng.normal(0, 0.04) * r
    d.ellipse([px - 0.52 * r, py - 0.42 * r, px + 0.52 * r, py + 0.42 * r],
              fill=_jitter(rng, DETAIL_COLOURS[det["patch"]], 5))
    e = 0.15 * r
    d.ellipse([px - e, py - e, px + e, py + e], fill=(18, 18, 20, 255))
    if g["floppy_ears"] > 0.5:
        d.polygon([(hx - 0.55 * r, hy - 0.75 * r), (hx - 0.05 * r, hy - 0.9 * r),
                   (hx - 0.35 * r, hy + 0.6 * r), (hx - 0.8 * r, hy + 0.35 * r)], fill=ear)
    else:
        d.polygon([(hx - 0.7 * r, hy - 0.5 * r), (hx - 0.05 * r, hy - 0.85 * r),
                   (hx - 0.5 * r, hy - 1.7 * r)], fill=ear)


def draw_animal(rng: np.random.Generator, fine: FineClass, canvas: int) -> tuple[Image.Image,
                                                                                dict[str, str]]:
    """The animal of class ``fine`` facing right on a transparent ``canvas`` x ``canvas``
    RGBA image, cropped to its outline; also returns the value of every detail it shows (the
    non-diagnostic ones drawn from ``rng``)."""
    details = {k: (fine.details[k] if k in fine.details else str(rng.choice(v)))
               for k, v in DETAILS.items()}
    img = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    (_draw_bird if fine.species.plan == "bird" else _draw_dog)(
        draw, rng, fine.species, details, float(canvas))
    return img.crop(img.getchannel("A").getbbox()), details


def render_image(rng: np.random.Generator, fine: FineClass, size: int
                 ) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """One photo of class ``fine``: the animal posed on clutter, lit, blurred, ``size`` x
    ``size`` RGB. Returns the image and the animal's box (x, y, w, h) in pixels."""
    work = 2 * size
    img = make_background(rng, work).convert("RGBA")
    animal, _ = draw_animal(rng, fine, 4 * size)
    if rng.random() < 0.5:
        animal = animal.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    max_angle = 25.0 if fine.species.plan == "bird" else 15.0
    animal = animal.rotate(float(rng.uniform(-max_angle, max_angle)),
                           resample=Image.Resampling.BICUBIC, expand=True)
    animal = animal.crop(animal.getchannel("A").getbbox())
    factor = float(rng.uniform(0.55, 0.9)) * work / max(animal.size)
    animal = animal.resize((max(1, round(animal.width * factor)),
                            max(1, round(animal.height * factor))), Image.Resampling.BOX)
    cx, cy = rng.uniform(0.38, 0.62, 2) * work
    x0, y0 = round(cx - animal.width / 2), round(cy - animal.height / 2)
    img.alpha_composite(animal, (max(x0, 0), max(y0, 0)),
                        (max(-x0, 0), max(-y0, 0)))
    box = (max(x0, 0), max(y0, 0), min(x0 + animal.width, work), min(y0 + animal.height, work))
    rgb = img.convert("RGB")
    if rng.random() < 0.3:  # twigs in front of the animal
        draw = ImageDraw.Draw(rgb)
        for _ in range(int(rng.integers(1, 3))):
            p = rng.uniform(0, work, 4)
            shade = int(rng.integers(30, 110))
            draw.line([(p[0], p[1]), (p[2], p[3])], fill=(shade, int(shade * 0.8), 20),
                      width=max(1, round(work / 50)))
    view = ViewParams(
        scale=0.0, center=(0.5, 0.5), rotation=0.0, yaw=0.0, pitch=0.0, jitter=0.0,
        occlusion=0.0, brightness=float(rng.uniform(-0.15, 0.15)),
        contrast=float(rng.uniform(0.8, 1.2)),
        cast=tuple(1 + float(v) for v in rng.uniform(-0.08, 0.08, 3)),
        shade=float(rng.uniform(0, 0.35)), blur=0.0, noise=float(rng.uniform(0, 0.02)),
    )
    rgb = _photometric(rgb, view, rng).resize((size, size), Image.Resampling.BOX)
    blur = float(rng.uniform(0, 0.6))
    if blur > 0.2:
        rgb = rgb.filter(ImageFilter.GaussianBlur(blur))
    x1, y1, x2, y2 = (v / 2 for v in box)
    return rgb, (x1, y1, x2 - x1, y2 - y1)


def _image_rng(seed: int, dataset: str, c: int, i: int) -> np.random.Generator:
    return make_rng(seed, STREAM, dataset, "image", c, i)


def _class_meta(classes: list[FineClass], seed: int) -> dict:
    return {
        "seed": seed, "generator_version": GENERATOR_VERSION,
        "classes": [{"name": f.name, "species": f.species.index, "plan": f.species.plan,
                     "diagnostic": f.details} for f in classes],
    }


def _official_train(i: int) -> bool:
    """The synthetic 'official' split: even positions within a class (about half, like CUB's
    5,994 / 5,794); the thesis split takes 60%, so the two differ."""
    return i % 2 == 0


# --------------------------------------------------------------------------- writers


def write_cub200(root: str | PathLike[str], *, seed: int, n_classes: int, per_class: int,
                 image_size: int, classes_per_species: int | None = None) -> Path:
    """Write ``<root>/CUB_200_2011/`` (classes.txt, images.txt, image_class_labels.txt,
    train_test_split.txt, bounding_boxes.txt, images/<class>/<name>.jpg). Returns ``root``."""
    require_positive(per_class=per_class, image_size=image_size)
    classes = design_classes(seed, "cub200", n_classes, classes_per_species)
    folder = Path(root) / FOLDERS["cub200"]
    lines: dict[str, list[str]] = {k: [] for k in ("classes", "images", "image_class_labels",
                                                   "train_test_split", "bounding_boxes")}
    image_id = 0
    for fine in classes:
        class_dir = f"{fine.index + 1:03d}.{fine.name}"
        lines["classes"].append(f"{fine.index + 1} {class_dir}")
        for i in range(per_class):
            image_id += 1
            img, (x, y, w, h) = render_image(_image_rng(seed, "cub200", fine.index, i), fine,
                                             image_size)
            rel = f"{class_dir}/{fine.name}_{i + 1:04d}_{image_id}.jpg"
            save_jpeg(img, folder / "images" / rel)
            lines["images"].append(f"{image_id} {rel}")
            lines["image_class_labels"].append(f"{image_id} {fine.index + 1}")
            lines["train_test_split"].append(f"{image_id} {int(_official_train(i))}")
            lines["bounding_boxes"].append(f"{image_id} {x:.1f} {y:.1f} {w:.1f} {h:.1f}")
    for name, rows in lines.items():
        (folder / f"{name}.txt").write_text("\n".join(rows) + "\n")
    write_json(_class_meta(classes, seed), folder / "synth_meta.json")
    return Path(root)


def _savemat(path: Path, variables: dict) -> None:
    """scipy ``savemat`` with the creation time in the 116-byte header replaced by a fixed
    text, so that the same content gives the same bytes."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=False)
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by irbook.data.synth".ljust(116)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def _cell(strings: list[str]) -> np.ndarray:
    """An N x 1 MATLAB cell array of strings."""
    cell = np.empty((len(strings), 1), dtype=object)
    for k, s in enumerate(strings):
        cell[k, 0] = np.array([s])
    return cell


def _dog_list(files: list[str], labels: list[int]) -> dict:
    return {"file_list": _cell(files), "annotation_list": _cell([f[:-4] for f in files]),
            "labels": np.asarray(labels, dtype=np.uint8 if max(labels) < 256 else np.uint16
                                 ).reshape(-1, 1)}


def write_stanford_dogs(root: str | PathLike[str], *, seed: int, n_classes: int,
                        per_class: int, image_size: int,
                        classes_per_species: int | None = None) -> Path:
    """Write ``<root>/StanfordDogs/Images/<wnid>-<breed>/<wnid>_<k>.jpg`` and
    ``lists/{file,train,test}_list.mat`` (``file_list``, ``annotation_list``, ``labels``
    1-based); wnids are made up (``n99...``). No Annotation/ folder. Returns ``root``."""
    require_positive(per_class=per_class, image_size=image_size)
    classes = design_classes(seed, "dogs", n_classes, classes_per_species)
    folder = Path(root) / FOLDERS["dogs"]
    lists: dict[str, tuple[list[str], list[int]]] = {k: ([], []) for k in ("file", "train",
                                                                            "test")}
    for fine in classes:
        wnid = f"n{99000000 + fine.index:08d}"
        for i in range(per_class):
            img, _ = render_image(_image_rng(seed, "dogs", fine.index, i), fine, image_size)
            rel = f"{wnid}-{fine.name}/{wnid}_{i + 1}.jpg"
            save_jpeg(img, folder / "Images" / rel)
            for key in ("file", "train" if _official_train(i) else "test"):
                lists[key][0].append(rel)
                lists[key][1].append(fine.index + 1)
    for key, (files, labels) in lists.items():
        _savemat(folder / "lists" / f"{key}_list.mat", _dog_list(files, labels))
    write_json(_class_meta(classes, seed), folder / "synth_meta.json")
    return Path(root)


def write_cifar100(root: str | PathLike[str], *, seed: int, n_classes: int,
                   per_class_train: int, per_class_test: int,
                   classes_per_species: int | None = None) -> Path:
    """Write ``<root>/cifar-100-python/{train,test,meta}`` pickles (32 x 32 images; ``data``
    N x 3072 uint8 in R, G, B planes; ``fine_labels``, ``coarse_labels`` = species,
    ``filenames``). ``meta`` lists exactly ``n_classes`` fine names (not 100) and one coarse
    name per species. Images are stored in a seeded random order, as in the real files.
    Returns ``root``."""
    require_positive(per_class_train=per_class_train, per_class_test=per_class_test)
    classes = design_classes(seed, "cifar100", n_classes, classes_per_species)
    folder = Path(root) / FOLDERS["cifar100"]
    folder.mkdir(parents=True, exist_ok=True)
    names = [f.name.lower() for f in classes]
    for part, offset, count in (("train", 0, per_class_train),
                                ("test", per_class_train, per_class_test)):
        images, fine_labels, coarse_labels, filenames = [], [], [], []
        for fine in classes:
            for i in range(offset, offset + count):
                img, _ = render_image(_image_rng(seed, "cifar100", fine.index, i), fine, 32)
                images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).reshape(-1))
                fine_labels.append(fine.index)
                coarse_labels.append(fine.species.index)
                filenames.append(f"{names[fine.index]}_s_{i:06d}.png")
        order = make_rng(seed, STREAM, "cifar100", "order", part).permutation(len(images))
        batch = {
            "filenames": [filenames[k] for k in order],
            "batch_label": f"synthetic {part} batch (irbook)",
            "fine_labels": [fine_labels[k] for k in order],
            "coarse_labels": [coarse_labels[k] for k in order],
            "data": np.stack(images)[order],
        }
        (folder / part).write_bytes(pickle.dumps(batch, protocol=2))
    n_species = classes[-1].species.index + 1
    meta = {"fine_label_names": names,
            "coarse_label_names": [f"species_{s:02d}" for s in range(n_species)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    write_json(_class_meta(classes, seed), folder / "synth_meta.json")
    return Path(root)


def _matlab_box(box: tuple[float, float, float, float], size: int) -> tuple[int, ...]:
    """A box (x1, y1, x2, y2) in continuous pixel coordinates as the 1-based inclusive pixel
    indices of the Stanford Cars annotations."""
    x1, y1 = (min(max(math.floor(v) + 1, 1), size) for v in box[:2])
    x2, y2 = (min(max(math.ceil(v), lo), size) for v, lo in zip(box[2:], (x1, y1), strict=True))
    return x1, y1, x2, y2


def _cars_annotations(records: list[tuple[tuple[int, ...], int, str]], with_class: bool = True
                      ) -> dict:
    """``annotations``: a 1 x N MATLAB struct array with fields bbox_x1, bbox_y1, bbox_x2,
    bbox_y2, class (1-based; left out in devkit/cars_test_annos.mat) and fname."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_class else [])
    ann = np.empty((1, len(records)), dtype=[(f, object) for f in [*fields, "fname"]])
    for k, (box, label, fname) in enumerate(records):
        values = [np.array([[v]], dtype=np.uint16) for v in box]
        if with_class:
            values.append(np.array([[label]], dtype=np.uint8 if label < 256 else np.uint16))
        ann[0, k] = (*values, np.array([fname]))
    return {"annotations": ann}


def write_stanford_cars(root: str | PathLike[str], *, seed: int, n_classes: int,
                        per_class: int, image_size: int,
                        classes_per_make: int | None = None) -> Path:
    """Write ``<root>/stanford_cars/``: ``cars_train/00001.jpg ...``, ``cars_test/00001.jpg
    ...`` (each split numbered from 1, classes mixed in a seeded random order as in the real
    files), ``devkit/cars_train_annos.mat``, ``devkit/cars_test_annos.mat`` (no labels),
    ``cars_test_annos_withlabels.mat`` and ``devkit/cars_meta.mat`` (``class_names``, 1 x n
    cell). Boxes are the cars' extents. Returns ``root``."""
    from irbook.data.synth.vehicles import design_cars, render_car  # vehicles imports this module

    require_positive(per_class=per_class, image_size=image_size)
    classes = design_cars(seed, n_classes, classes_per_make)
    folder = Path(root) / FOLDERS["cars"]
    records: dict[str, list[tuple[tuple[int, ...], int, str]]] = {}
    for part in ("train", "test"):
        items = [(car.index, i) for car in classes for i in range(per_class)
                 if _official_train(i) == (part == "train")]
        order = make_rng(seed, STREAM, "cars", "order", part).permutation(len(items))
        records[part] = []
        for k, j in enumerate(order.tolist(), 1):
            c, i = items[j]
            img, box = render_car(_image_rng(seed, "cars", c, i), classes[c], image_size)
            save_jpeg(img, folder / f"cars_{part}" / f"{k:05d}.jpg")
            records[part].append((_matlab_box(box, image_size), c + 1, f"{k:05d}.jpg"))
    _savemat(folder / "devkit" / "cars_train_annos.mat", _cars_annotations(records["train"]))
    _savemat(folder / "devkit" / "cars_test_annos.mat",
             _cars_annotations(records["test"], with_class=False))
    _savemat(folder / "cars_test_annos_withlabels.mat", _cars_annotations(records["test"]))
    _savemat(folder / "devkit" / "cars_meta.mat",
             {"class_names": _cell([car.name for car in classes]).T})
    meta = {"seed": seed, "generator_version": CARS_GENERATOR_VERSION,
            "classes": [{"name": car.name, "make": car.make.index, "body": car.make.body,
                         "diagnostic": car.details} for car in classes]}
    write_json(meta, folder / "synth_meta.json")
    return Path(root)


WRITERS = {"cub200": write_cub200, "dogs": write_stanford_dogs, "cifar100": write_cifar100,
           "cars": write_stanford_cars}
VERSIONS = {"cub200": GENERATOR_VERSION, "dogs": GENERATOR_VERSION,
            "cifar100": GENERATOR_VERSION, "cars": CARS_GENERATOR_VERSION}


def ensure_finegrained(root: str | PathLike[str], name: str, *, seed: int, scale: str) -> Path:
    """Write synthetic dataset ``name`` (cub200, dogs, cifar100, cars) with preset ``scale`` (a key
    of :data:`SCALES`) under ``root``, unless it is already there for the same configuration.
    Returns ``root``: pass it to :func:`irbook.data.finegrained.load_finegrained`."""
    if name not in WRITERS:
        raise ValueError(f"name must be one of {list(FINEGRAINED_DATASETS)}, got {name!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    make_rng(seed)  # validates the seed
    preset = SCALES[scale][name]
    kind = f"finegrained_{name}"
    config = {"kind": kind, "version": VERSIONS[name], "seed": seed, "scale": scale,
              **preset}
    return ensure_generated(Path(root), kind, config, (FOLDERS[name],),
                            lambda folder: WRITERS[name](folder, seed=seed, **preset))
