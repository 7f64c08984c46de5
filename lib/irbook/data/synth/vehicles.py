"""Synthetic cars for the Stanford Cars stand-in of chapter 7: side views of car bodies on roads,
a third family next to the birds and dogs of :mod:`irbook.data.synth.finegrained`, with a large
semantic and colour shift from both (grey roads and blue skies instead of cluttered nature,
glossy paints instead of plumage, rigid boxy outlines instead of ellipses).

What makes them fine-grained (the same scheme as the animals):

- Classes ("make model body year") come in **makes** of ``classes_per_make`` consecutive
  classes. A make fixes the coarse look: body type (sedan, coupe, hatchback, wagon, SUV, pickup,
  van; the first seven makes of a seed all differ), its proportions (length of the hood, height
  of the roof, pillar slopes, wheel size, ground clearance), the paint, the contrasting colour
  of stripes and two-tone roofs, and the window tint.
- Five small **details** exist on every car (:data:`CAR_DETAILS`): ``roof`` (plain, two-tone,
  roof rack), ``wheels`` (spoked, disc, dark rims), side ``stripes`` (none, one, two),
  ``lights`` (round, tall, slim lamps) and ``spoiler`` (none, lip, wing). Each make uses three
  of them to tell its classes apart (siblings differ in at least two of the three); the other
  two are drawn afresh for every image.
- Nuisance: facing left or right, length (scale), position on the road, +-4% proportions,
  paint jitter, the scene (sky, city/trees/hills, asphalt, lane marks), a pole in front,
  lighting, blur and noise.

Scenes are drawn directly at twice the output size and reduced with a box filter (no
per-object layers or rotations): the demo set (40 classes x 100 images of 64 px) writes in
about 8 s on one CPU core, 3-4 times faster than the birds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from irbook.data.synth.finegrained import GOLDEN_HUE_STEP, STREAM, Colour, _class_codes, _jitter
from irbook.data.synth.instance import require_positive
from irbook.data.synth.patterns import _hsv, make_rng

DATASET = "cars"
CLASSES_PER_MAKE = 4
MAX_CLASSES_PER_MAKE = 8
N_DIAGNOSTIC = 3
CAR_DETAILS: dict[str, tuple[str, ...]] = {
    "roof": ("plain", "two_tone", "rack"),
    "wheels": ("spoked", "disc", "dark"),
    "stripes": ("0", "1", "2"),
    "lights": ("round", "tall", "slim"),
    "spoiler": ("none", "lip", "wing"),
}
BODIES = ("Sedan", "Coupe", "Hatchback", "Wagon", "SUV", "Pickup", "Van")
MAKES = ("Aurex", "Belvane", "Cordell", "Dravik", "Elmont", "Faron", "Garvin", "Halvor",
         "Istrel", "Jarno")
MODELS = ("Arc", "Brio", "Crest", "Dune", "Echo", "Flair", "Glide", "Haze")
# cabin (u_r0, u_r1, u_f1, u_f0: rear pillar base/top, front pillar top/base, along the car from
# -0.5 = rear to 0.5 = front), heights above the ground in car lengths, wheel radius
BODY_SHAPES: dict[str, dict[str, float]] = {
    "Sedan": {"u_r0": -0.32, "u_r1": -0.2, "u_f1": 0.08, "u_f0": 0.22, "belt": 0.21,
              "roof": 0.35, "trunk": 0.01, "clear": 0.045, "wheel_r": 0.085},
    "Coupe": {"u_r0": -0.38, "u_r1": -0.12, "u_f1": 0.03, "u_f0": 0.2, "belt": 0.19,
              "roof": 0.31, "trunk": 0.0, "clear": 0.04, "wheel_r": 0.088},
    "Hatchback": {"u_r0": -0.48, "u_r1": -0.38, "u_f1": 0.07, "u_f0": 0.22, "belt": 0.23,
                  "roof": 0.39, "trunk": 0.0, "clear": 0.05, "wheel_r": 0.09},
    "Wagon": {"u_r0": -0.49, "u_r1": -0.45, "u_f1": 0.07, "u_f0": 0.22, "belt": 0.22,
              "roof": 0.37, "trunk": 0.0, "clear": 0.045, "wheel_r": 0.085},
    "SUV": {"u_r0": -0.49, "u_r1": -0.47, "u_f1": 0.1, "u_f0": 0.23, "belt": 0.3,
            "roof": 0.46, "trunk": 0.0, "clear": 0.075, "wheel_r": 0.105},
    "Pickup": {"u_r0": -0.07, "u_r1": -0.06, "u_f1": 0.12, "u_f0": 0.25, "belt": 0.28,
               "roof": 0.44, "trunk": 0.0, "clear": 0.07, "wheel_r": 0.1},
    "Van": {"u_r0": -0.5, "u_r1": -0.49, "u_f1": 0.3, "u_f0": 0.42, "belt": 0.26,
            "roof": 0.5, "trunk": 0.0, "clear": 0.05, "wheel_r": 0.085},
}
TYRE: Colour = (26, 26, 29)
LAMP: dict[str, Colour] = {"head": (250, 246, 214), "tail": (205, 28, 32)}
RIMS: dict[str, Colour] = {"spoked": (196, 198, 204), "disc": (214, 216, 220), "dark": (52, 52, 58)}


# --------------------------------------------------------------------------- class design


@dataclass(frozen=True, eq=False)
class CarMake:
    """Coarse template shared by the classes of one make."""

    index: int
    name: str
    body: str
    colours: dict[str, Colour]
    geometry: dict[str, float]
    diagnostic: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class CarClass:
    """One class: a make and a value for each of its diagnostic details."""

    index: int
    make: CarMake
    details: dict[str, str]
    name: str


def _paint(rng: np.random.Generator, hue: float) -> Colour:
    """Car paint: a quarter achromatic (white, silver, grey, black), the rest glossy colours."""
    if rng.random() < 0.25:
        return _hsv(hue, rng.uniform(0.0, 0.06), float(rng.choice([0.12, 0.45, 0.72, 0.93])))
    return _hsv(hue, rng.uniform(0.5, 0.92), rng.uniform(0.4, 0.88))


def _contrast(rng: np.random.Generator, against: Colour) -> Colour:
    """Dark on light paint, light on dark paint, of a random hue."""
    value = rng.uniform(0.85, 0.97) if sum(against) / (3 * 255) < 0.5 else rng.uniform(0.06, 0.2)
    return _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.5), value)


def _sample_make(rng: np.random.Generator, index: int, body: str, hue: float) -> CarMake:
    paint = _paint(rng, hue)
    colours = {
        "paint": paint, "accent": _contrast(rng, paint),
        "window": _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.1, 0.45), rng.uniform(0.15, 0.32)),
        "trim": _hsv(0, 0, rng.uniform(0.08, 0.2)),
    }
    geometry = {k: v * rng.uniform(0.93, 1.07) for k, v in BODY_SHAPES[body].items()}
    geometry["wheelbase"] = rng.uniform(0.6, 0.68)
    geometry["hood_drop"] = rng.uniform(0.02, 0.06)
    geometry["height"] = rng.uniform(0.94, 1.06)  # squat or tall versions of the body type
    diagnostic = tuple(sorted(rng.choice(list(CAR_DETAILS), N_DIAGNOSTIC, replace=False),
                              key=list(CAR_DETAILS).index))
    name = MAKES[index % len(MAKES)] + (str(index // len(MAKES) + 1)
                                        if index >= len(MAKES) else "")
    return CarMake(index, name, body, colours, geometry, tuple(str(d) for d in diagnostic))


def design_cars(seed: int, n_classes: int, classes_per_make: int | None = None
                ) -> list[CarClass]:
    """The ``n_classes`` car classes of ``seed``: class ``c`` belongs to make
    ``c // classes_per_make``; a class never depends on how many are drawn."""
    per = CLASSES_PER_MAKE if classes_per_make is None else classes_per_make
    require_positive(n_classes=n_classes, classes_per_make=per)
    if per > MAX_CLASSES_PER_MAKE:
        raise ValueError(f"classes_per_make must be at most {MAX_CLASSES_PER_MAKE}, got {per}")
    bodies = make_rng(seed, STREAM, DATASET, "bodies").permutation(len(BODIES))
    first_hue = float(make_rng(seed, STREAM, DATASET, "hue").uniform(0, 1))
    classes = []
    for m in range(math.ceil(n_classes / per)):
        rng = make_rng(seed, STREAM, DATASET, "make", m)
        hue = (first_hue + GOLDEN_HUE_STEP * m + rng.uniform(-0.04, 0.04)) % 1.0
        make = _sample_make(rng, m, BODIES[int(bodies[m % len(BODIES)])], hue)
        count = min(per, n_classes - m * per)
        for k, code in enumerate(_class_codes(rng, make.diagnostic, count, CAR_DETAILS)):
            details = {kind: CAR_DETAILS[kind][v]
                       for kind, v in zip(make.diagnostic, code, strict=True)}
            name = f"{make.name} {MODELS[k]} {make.body} {2004 + 2 * k + m % 3}"
            classes.append(CarClass(m * per + k, make, details, name))
    return classes


# --------------------------------------------------------------------------- drawing


class _Frame:
    """Maps car coordinates (u along the car, -0.5 rear to 0.5 front; v up from the ground, both
    in car lengths) to pixels, mirrored when the car faces left, and records the extent."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, ground: float, length: float,
                 facing: float) -> None:
        self.draw, self.cx, self.ground, self.length, self.facing = draw, cx, ground, length, facing
        self.xs: list[float] = []
        self.ys: list[float] = []

    def xy(self, u: float, v: float) -> tuple[float, float]:
        x, y = self.cx + self.facing * u * self.length, self.ground - v * self.length
        self.xs.append(x)
        self.ys.append(y)
        return x, y

    def polygon(self, points: list[tuple[float, float]], fill) -> None:
        self.draw.polygon([self.xy(u, v) for u, v in points], fill=fill)

    def rect(self, u0: float, v0: float, u1: float, v1: float, fill) -> None:
        self.polygon([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], fill)

    def ellipse(self, u: float, v: float, ru: float, rv: float, fill) -> None:
        (x0, y0), (x1, y1) = self.xy(u - ru, v - rv), self.xy(u + ru, v + rv)
        self.draw.ellipse([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=fill)

    def line(self, points: list[tuple[float, float]], fill, width: float) -> None:
        self.draw.line([self.xy(u, v) for u, v in points], fill=fill,
                       width=max(1, round(width * self.length)))

    def box(self) -> tuple[float, float, float, float]:
        return min(self.xs), min(self.ys), max(self.xs), max(self.ys)


def _on_edge(u_low: float, u_high: float, v: float, v_low: float, v_high: float) -> float:
    """u of the straight pillar from (u_low, v_low) to (u_high, v_high) at height v."""
    return u_low + (u_high - u_low) * (v - v_low) / (v_high - v_low)


def _draw_body(f: _Frame, g: dict[str, float], col: dict, det: dict[str, str]) -> None:
    """Lower body, side stripes, wheel arches and wheels."""
    belt, clear = g["belt"], g["clear"]
    nose = belt - g["hood_drop"]
    rear = belt + g["trunk"]
    f.polygon([(-0.5, clear + 0.03), (-0.5, rear - 0.015), (-0.48, rear), (g["u_f0"], belt),
               (0.47, nose), (0.5, nose - 0.025), (0.5, clear + 0.03), (0.46, clear),
               (-0.46, clear)], col["paint"])
    f.line([(-0.46, belt - 0.02), (g["u_f0"], belt - 0.02)], col["shine"], 0.012)  # reflection
    n = int(det["stripes"])
    thick = 0.034 if n == 1 else 0.022
    for k in range(n):
        v = clear + 0.45 * (belt - clear) - k * (thick + 0.016)
        f.rect(-0.49, v, 0.49, v - thick, col["accent"])
    r = g["wheel_r"]
    for u in (-g["wheelbase"] / 2, g["wheelbase"] / 2):
        u = u + 0.02
        f.ellipse(u, r, 1.18 * r, 1.18 * r, col["arch"])
        f.ellipse(u, r, r, r, TYRE)
        _draw_rim(f, u, r, det["wheels"], col["rim"])


def _draw_rim(f: _Frame, u: float, r: float, style: str, colour) -> None:
    if style == "spoked":
        f.ellipse(u, r, 0.62 * r, 0.62 * r, colour)
        for k in range(5):
            a = 2 * math.pi * k / 5 + 0.3
            f.line([(u, r), (u + 0.6 * r * math.cos(a), r + 0.6 * r * math.sin(a))], TYRE, 0.011)
        f.ellipse(u, r, 0.16 * r, 0.16 * r, colour)
    elif style == "disc":
        f.ellipse(u, r, 0.66 * r, 0.66 * r, colour)
        f.ellipse(u, r, 0.18 * r, 0.18 * r, TYRE)
    else:
        f.ellipse(u, r, 0.6 * r, 0.6 * r, (150, 150, 156, 255))
        f.ellipse(u, r, 0.5 * r, 0.5 * r, colour)


def _draw_cabin(f: _Frame, g: dict[str, float], col: dict, det: dict[str, str]) -> None:
    """Greenhouse (two-tone or paint), windows with pillars, roof rack, pickup bed."""
    belt, roof = g["belt"], g["roof"]
    f.polygon([(g["u_r0"], belt), (g["u_r1"], roof), (g["u_f1"], roof), (g["u_f0"], belt)],
              col["accent"] if det["roof"] == "two_tone" else col["paint"])
    lo, hi = belt + 0.012, roof - 0.032
    r_lo, r_hi = (_on_edge(g["u_r0"], g["u_r1"], v, belt, roof) + 0.03 for v in (lo, hi))
    f_lo, f_hi = (_on_edge(g["u_f0"], g["u_f1"], v, belt, roof) - 0.03 for v in (lo, hi))
    f.polygon([(r_lo, lo), (r_hi, hi), (f_hi, hi), (f_lo, lo)], col["window"])
    n_pillars = 2 if f_lo - r_lo > 0.55 else 1
    pillar = col["accent"] if det["roof"] == "two_tone" else col["paint"]
    for k in range(1, n_pillars + 1):
        u = r_lo + (f_lo - r_lo) * k / (n_pillars + 1)
        f.rect(u - 0.014, lo, u + 0.014, hi, pillar)
    if det["roof"] == "rack":
        u0, u1 = g["u_r1"] + 0.03, g["u_f1"] - 0.03
        f.rect(u0, roof + 0.035, u1, roof + 0.055, col["trim"])
        for u in (u0 + 0.03, u1 - 0.03):
            f.rect(u - 0.008, roof, u + 0.008, roof + 0.04, col["trim"])
    if g["u_r0"] > -0.3:  # pickup: the bed behind the cab
        f.rect(-0.47, belt - 0.006, g["u_r0"] - 0.02, belt - 0.022, col["trim"])


def _draw_lamps_and_spoiler(f: _Frame, g: dict[str, float], col: dict,
                            det: dict[str, str]) -> None:
    belt = g["belt"]
    head_v, tail_v = belt - g["hood_drop"] - 0.04, belt + g["trunk"] - 0.045
    for u_out, v, lamp in ((0.5, head_v, LAMP["head"]), (-0.5, tail_v, LAMP["tail"])):
        side = 1.0 if u_out > 0 else -1.0
        if det["lights"] == "round":
            f.ellipse(u_out - side * 0.03, v, 0.028, 0.028, lamp)
        elif det["lights"] == "tall":
            f.rect(u_out - side * 0.045, v - 0.035, u_out - side * 0.005, v + 0.035, lamp)
        else:
            f.rect(u_out - side * 0.085, v - 0.011, u_out - side * 0.004, v + 0.011, lamp)
    if det["spoiler"] == "none":
        return
    low_rear = g["u_r0"] > -0.44  # sedan, coupe, pickup: on the trunk lid or bed; else the roof
    u, v = (-0.48, belt + g["trunk"]) if low_rear else (g["u_r1"] + 0.005, g["roof"])
    if det["spoiler"] == "lip":
        f.polygon([(u, v), (u + 0.12, v), (u - 0.015, v + 0.05)], col["trim"])
    else:
        for du in (0.03, 0.09):
            f.rect(u + du - 0.007, v, u + du + 0.007, v + 0.055, col["trim"])
        f.rect(u - 0.02, v + 0.05, u + 0.12, v + 0.075, col["trim"])


def draw_car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, car: CarClass, cx: float,
             ground: float, length: float, facing: float
             ) -> tuple[tuple[float, float, float, float], dict[str, str]]:
    """Draw a car of class ``car`` with its wheels on ``ground`` (pixels), centred at ``cx``,
    ``length`` pixels long, facing right (``facing=1``) or left (-1). Returns its box (x1, y1,
    x2, y2) and the value of every detail shown (the non-diagnostic ones drawn from ``rng``)."""
    details = {k: (car.details[k] if k in car.details else str(rng.choice(v)))
               for k, v in CAR_DETAILS.items()}
    g = {k: v * rng.uniform(0.96, 1.04) for k, v in car.make.geometry.items()}
    for key in ("belt", "roof", "clear", "trunk"):
        g[key] *= g["height"]
    paint = _jitter(rng, car.make.colours["paint"], 9)
    col = {k: _jitter(rng, c, 6) for k, c in car.make.colours.items()}
    col["paint"] = paint
    col["shine"] = tuple(min(255, round(c * 0.6 + 102)) for c in paint[:3]) + (255,)
    col["arch"] = tuple(round(c * 0.25) for c in paint[:3]) + (255,)
    col["rim"] = _jitter(rng, RIMS[details["wheels"]], 5)
    f = _Frame(draw, cx, ground, length, facing)
    f.ellipse(0.0, 0.0, 0.52, 0.025, (20, 20, 22, 255))  # shadow under the car
    f.xs.clear()
    f.ys.clear()
    _draw_body(f, g, col, details)
    _draw_cabin(f, g, col, details)
    _draw_lamps_and_spoiler(f, g, col, details)
    return f.box(), details


# --------------------------------------------------------------------------- scenes


def _sky(rng: np.random.Generator, size: int) -> Image.Image:
    """Vertical sky gradient (clear blue, overcast grey or dusk), ``size`` x ``size``."""
    kind = rng.random()
    if kind < 0.6:
        top = _hsv(rng.uniform(0.55, 0.63), rng.uniform(0.35, 0.7), rng.uniform(0.6, 0.9))
        low = _hsv(rng.uniform(0.52, 0.6), rng.uniform(0.05, 0.25), rng.uniform(0.85, 1.0))
    elif kind < 0.85:
        v = rng.uniform(0.55, 0.85)
        top, low = _hsv(0.6, 0.05, v), _hsv(0.6, 0.03, min(1.0, v + 0.1))
    else:
        top = _hsv(rng.uniform(0.6, 0.7), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6))
        low = _hsv(rng.uniform(0.03, 0.1), rng.uniform(0.4, 0.7), rng.uniform(0.8, 1.0))
    t = np.linspace(0.0, 1.0, size)[:, None]
    column = (1 - t) * np.asarray(top, float) + t * np.asarray(low, float)
    column = Image.fromarray((column[:, None, :] + 0.5).astype(np.uint8), "RGB")
    return column.resize((size, size), Image.Resampling.NEAREST)


def _scenery(draw: ImageDraw.ImageDraw, rng: np.random.Generator, work: int,
             horizon: float) -> None:
    """City blocks, a tree line or hills standing on the horizon (or nothing)."""
    kind = rng.random()
    if kind < 0.4:
        x = float(rng.uniform(-0.1, 0.0) * work)
        while x < work:
            w, h = rng.uniform(0.08, 0.22) * work, rng.uniform(0.08, 0.4) * work
            shade = _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.3), rng.uniform(0.35, 0.8))
            draw.rectangle([x, horizon - h, x + w, horizon], fill=shade)
            for _ in range(int(rng.integers(0, 5))):
                wx, wy = x + rng.uniform(0.1, 0.8) * w, horizon - rng.uniform(0.2, 0.9) * h
                draw.rectangle([wx, wy, wx + 0.04 * work, wy + 0.03 * work],
                               fill=_hsv(0.6, 0.2, rng.uniform(0.2, 0.9)))
            x += w + rng.uniform(0.0, 0.05) * work
    elif kind < 0.7:
        for _ in range(int(rng.integers(6, 14))):
            x, r = rng.uniform(0, 1) * work, rng.uniform(0.04, 0.1) * work
            draw.ellipse([x - r, horizon - 2.2 * r, x + r, horizon + 0.2 * r],
                         fill=_hsv(rng.uniform(0.22, 0.36), rng.uniform(0.3, 0.7),
                                   rng.uniform(0.2, 0.5)))
    elif kind < 0.9:
        pts = [(0.0, horizon)] + [(float(x), float(horizon - rng.uniform(0.02, 0.15) * work))
                                  for x in np.linspace(0, work, 5)] + [(float(work), horizon)]
        draw.polygon(pts, fill=_hsv(rng.uniform(0.25, 0.55), rng.uniform(0.15, 0.45),
                                    rng.uniform(0.35, 0.65)))


def road_scene(rng: np.random.Generator, work: int) -> tuple[Image.Image, float]:
    """Sky, scenery, kerb and asphalt with lane marks, ``work`` x ``work`` RGB; returns the
    image and the y of the road's far edge (cars stand below it)."""
    horizon = float(rng.uniform(0.35, 0.55) * work)
    img = _sky(rng, work)
    draw = ImageDraw.Draw(img)
    _scenery(draw, rng, work, horizon)
    kerb = horizon + rng.uniform(0.02, 0.06) * work
    if rng.random() < 0.5:  # a strip of grass or pavement before the kerb
        strip = (_hsv(rng.uniform(0.22, 0.32), 0.5, rng.uniform(0.35, 0.55)) if rng.random() < 0.5
                 else _hsv(0.08, 0.08, rng.uniform(0.6, 0.8)))
        draw.rectangle([0, horizon, work, kerb], fill=strip)
    asphalt = _hsv(rng.uniform(0.55, 0.7), rng.uniform(0.0, 0.08), rng.uniform(0.22, 0.48))
    draw.rectangle([0, kerb, work, work], fill=asphalt)
    draw.rectangle([0, kerb, work, kerb + 0.012 * work], fill=_hsv(0, 0, rng.uniform(0.6, 0.85)))
    mark = (238, 238, 232) if rng.random() < 0.7 else (236, 196, 52)
    y, dash = float(rng.uniform(0.9, 0.97) * work), rng.uniform(0.08, 0.16) * work
    for x in np.arange(rng.uniform(-dash, 0), work, 2 * dash):
        draw.rectangle([float(x), y, float(x + dash), y + 0.015 * work], fill=mark)
    return img, kerb


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical 0..1 ramps of a square ``size`` x ``size`` image."""
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    return ramp[None, :, None], ramp[:, None, None]


def _lighting(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    """Brightness, contrast, colour cast, a linear shading gradient and uniform sensor noise
    (what :func:`irbook.data.synth.patterns._photometric` does, in a few numpy passes)."""
    contrast, brightness, t, shade, noise = rng.uniform(
        [0.85, -0.12, 0.0, 0.0, 0.0], [1.15, 0.12, 2 * np.pi, 0.3, 0.015])
    cast = 1 + rng.uniform(-0.06, 0.06, 3).astype(np.float32)
    x = np.asarray(img, dtype=np.float32) * (contrast / 255 * cast)
    x += (0.5 + brightness - 0.5 * contrast) * cast
    cx, cy = math.cos(t), math.sin(t)  # the gradient cx X + cy Y over the unit square, to 0..1
    low, span = min(cx, 0.0) + min(cy, 0.0), abs(cx) + abs(cy)
    ramp_x, ramp_y = _grid(x.shape[0])
    x *= 1 - shade / span * (cx * ramp_x + cy * ramp_y - low)
    x += (rng.random(x.shape, dtype=np.float32) - 0.5) * (noise * math.sqrt(12))  # std = noise
    return Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def render_car(rng: np.random.Generator, car: CarClass, size: int
               ) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """One photo of class ``car``: the car on a road scene, lit, blurred, ``size`` x ``size``
    RGB. Returns the image and the car's box (x1, y1, x2, y2) in pixels of the image."""
    work = 2 * size
    img, kerb = road_scene(rng, work)
    draw = ImageDraw.Draw(img)
    length = float(rng.uniform(0.7, 0.95) * work)
    cx = float(rng.uniform(0.44, 0.56) * work)
    ground = float(kerb + rng.uniform(0.55, 0.88) * (work - kerb))
    facing = 1.0 if rng.random() < 0.5 else -1.0
    box, _ = draw_car(draw, rng, car, cx, ground, length, facing)
    if rng.random() < 0.2:  # a lamp post or sign pole in front of the car
        x = float(rng.uniform(0.05, 0.95) * work)
        draw.line([(x, 0), (x, ground + 0.05 * work)], fill=_hsv(0, 0, rng.uniform(0.15, 0.5)),
                  width=max(1, round(work / 45)))
    rgb = _lighting(rng, img.resize((size, size), Image.Resampling.BOX))
    blur = float(rng.uniform(0, 0.6))
    if blur > 0.3:
        rgb = rgb.filter(ImageFilter.GaussianBlur(blur))
    x1, y1, x2, y2 = (min(max(v / 2, 0.0), float(size)) for v in box)
    return rgb, (x1, y1, x2, y2)
