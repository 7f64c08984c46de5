"""Procedural planar patterns, cluttered backgrounds and photographed views of a pattern.

A pattern (a "landmark facade", a "poster", a "product", a "toy") has a coarse colour layout and
fine detail (windows, stripes, blobs, text-like marks). A view pastes a perspective-warped copy
onto a fresh cluttered background and changes scale, crop, illumination and occlusion. Views are
labelled by what remains visible (:func:`sample_view`):

- ``easy``: at least 85% of the object visible, mild viewpoint and light changes;
- ``hard``: two strong changes among viewpoint, small scale, crop, occlusion, illumination; at
  least 35% visible;
- ``junk``: under 25% visible, or the object is tiny.

Everything is numpy + PIL and deterministic given the ``numpy.random.Generator``.
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

ViewKind = Literal["query", "easy", "hard", "junk"]

STYLES: dict[str, dict[str, tuple]] = {
    # rOxford-like: stone facades with windows, arches and inscriptions
    "facade": {
        "silhouettes": ("rect", "arch", "gable"),
        "layouts": ("blocks", "bands"),
        "motifs": ("windows", "arches", "stripes", "text", "checker"),
        "base_sat": (0.08, 0.45),
        "accent_sat": (0.35, 0.85),
    },
    # rParis-like: colourful posters and signs
    "poster": {
        "silhouettes": ("rect", "round"),
        "layouts": ("diagonal", "radial", "blocks"),
        "motifs": ("blobs", "rings", "stripes", "text", "zigzag"),
        "base_sat": (0.3, 0.9),
        "accent_sat": (0.5, 1.0),
    },
    # Holidays-like: anything
    "scene": {
        "silhouettes": ("rect", "arch", "round", "gable"),
        "layouts": ("blocks", "bands", "diagonal", "radial"),
        "motifs": ("windows", "blobs", "rings", "stripes", "text", "checker", "zigzag"),
        "base_sat": (0.1, 0.8),
        "accent_sat": (0.4, 1.0),
    },
    # UKBench-like: boxes and CD covers
    "product": {
        "silhouettes": ("rect", "round"),
        "layouts": ("bands", "blocks", "radial"),
        "motifs": ("text", "rings", "blobs", "checker", "stripes"),
        "base_sat": (0.4, 1.0),
        "accent_sat": (0.5, 1.0),
    },
    # classification pre-training: toy object categories with distinctive outlines
    "toy": {
        "silhouettes": ("rect", "round", "triangle", "star", "hexagon", "arch"),
        "layouts": ("blocks", "bands", "diagonal", "radial"),
        "motifs": ("windows", "blobs", "rings", "stripes", "text", "checker", "zigzag", "arches"),
        "base_sat": (0.2, 1.0),
        "accent_sat": (0.4, 1.0),
    },
}

Colour = tuple[int, int, int]


def make_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """Independent generator for (seed, *keys); string keys are hashed with CRC32 (stable across
    runs, unlike ``hash``)."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    ints = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(ints))


def _hsv(h: float, s: float, v: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# --------------------------------------------------------------------------- pattern spec


@dataclass(frozen=True)
class PatternSpec:
    """What stays fixed for one object (or one object class): palette, outline, layout, motifs."""

    style: str
    palette: tuple[Colour, ...]  # base, three accents, dark
    aspect: float  # width / height
    silhouette: str
    layout: str
    motifs: tuple[str, ...]


def sample_spec(rng: np.random.Generator, style: str) -> PatternSpec:
    """Draw a pattern specification of the given ``style`` (a key of :data:`STYLES`)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
    cfg = STYLES[style]
    h0 = _uniform(rng, 0, 1)
    base = _hsv(h0, _uniform(rng, *cfg["base_sat"]), _uniform(rng, 0.55, 0.95))
    offsets = np.sort(rng.uniform(0.12, 0.88, size=3))
    accents = tuple(
        _hsv(h0 + o, _uniform(rng, *cfg["accent_sat"]), _uniform(rng, 0.35, 1.0)) for o in offsets
    )
    dark = _hsv(_uniform(rng, 0, 1), _uniform(rng, 0.2, 0.8), _uniform(rng, 0.05, 0.3))
    n_motifs = int(rng.integers(2, 4))
    motifs = tuple(str(m) for m in rng.choice(cfg["motifs"], size=n_motifs, replace=False))
    return PatternSpec(
        style=style,
        palette=(base, *accents, dark),
        aspect=float(np.exp(rng.uniform(np.log(0.65), np.log(1.5)))),
        silhouette=str(rng.choice(cfg["silhouettes"])),
        layout=str(rng.choice(cfg["layouts"])),
        motifs=motifs,
    )


# --------------------------------------------------------------------------- drawing


def _pick(rng: np.random.Generator, palette: tuple[Colour, ...], exclude: int = -1) -> Colour:
    choices = [i for i in range(len(palette)) if i != exclude]
    return palette[int(rng.choice(choices))]


def _jitter_palette(
    rng: np.random.Generator, palette: tuple[Colour, ...], amount: float
) -> tuple[Colour, ...]:
    if amount <= 0:
        return palette
    arr = np.asarray(palette, dtype=np.float64) + rng.normal(0, amount, size=(len(palette), 3))
    return tuple(tuple(int(v) for v in row) for row in np.clip(arr, 0, 255).round())


def _draw_layout(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, spec: PatternSpec,
    palette: tuple[Colour, ...], w: int, h: int,
) -> None:
    """Coarse colour layout covering the whole pattern."""
    if spec.layout == "blocks":
        xs = np.sort(np.r_[0, rng.uniform(0.2, 0.8, int(rng.integers(1, 3))), 1]) * w
        ys = np.sort(np.r_[0, rng.uniform(0.2, 0.8, int(rng.integers(1, 3))), 1]) * h
        for i in range(len(xs) - 1):
            for j in range(len(ys) - 1):
                draw.rectangle([xs[i], ys[j], xs[i + 1], ys[j + 1]], fill=_pick(rng, palette[:4]))
    elif spec.layout == "bands":
        ys = np.sort(np.r_[0, rng.uniform(0.1, 0.9, int(rng.integers(2, 5))), 1]) * h
        for j in range(len(ys) - 1):
            draw.rectangle([0, ys[j], w, ys[j + 1]], fill=_pick(rng, palette[:4]))
    elif spec.layout == "diagonal":
        draw.rectangle([0, 0, w, h], fill=palette[0])
        width = _uniform(rng, 0.15, 0.35) * (w + h)
        sign = 1 if rng.random() < 0.5 else -1
        for k in range(-3, 4):
            off = k * width * 1.0 + _uniform(rng, -0.1, 0.1) * width
            if rng.random() < 0.6:
                x0 = off
                poly = [(x0, 0), (x0 + width / 2, 0), (x0 + width / 2 + sign * h, h),
                        (x0 + sign * h, h)]
                draw.polygon(poly, fill=_pick(rng, palette[:4]))
    else:  # radial
        draw.rectangle([0, 0, w, h], fill=palette[0])
        cx, cy = _uniform(rng, 0.3, 0.7) * w, _uniform(rng, 0.3, 0.7) * h
        n = int(rng.integers(3, 7))
        start = _uniform(rng, 0, 360)
        for k in range(n):
            r = max(w, h) * 1.5
            draw.pieslice(
                [cx - r, cy - r, cx + r, cy + r], start + k * 360 / n, start + (k + 0.5) * 360 / n,
                fill=_pick(rng, palette[:4]),
            )
        r = _uniform(rng, 0.15, 0.3) * min(w, h)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_pick(rng, palette))


def _region(rng: np.random.Generator, w: int, h: int, lo: float = 0.35, hi: float = 0.75):
    rw, rh = _uniform(rng, lo, hi) * w, _uniform(rng, lo, hi) * h
    x0, y0 = _uniform(rng, 0, w - rw), _uniform(rng, 0, h - rh)
    return x0, y0, x0 + rw, y0 + rh


def _motif_windows(draw, rng, box, col, other, palette, unit, arches=False) -> None:
    x0, y0, x1, y1 = box
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 6))
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    for i in range(cols):
        for j in range(rows):
            bx, by = x0 + i * cw + 0.2 * cw, y0 + j * ch + 0.15 * ch
            ex, ey = x0 + (i + 1) * cw - 0.2 * cw, y0 + (j + 1) * ch - 0.15 * ch
            if arches:
                radius = min((ex - bx) / 2, (ey - by) / 2)
                draw.rectangle([bx, by + radius, ex, ey], fill=col)
                draw.ellipse([bx, by, ex, by + 2 * radius], fill=col)
            else:
                draw.rectangle([bx, by, ex, ey], fill=col)
                draw.line([(bx + ex) / 2, by, (bx + ex) / 2, ey], fill=other, width=1)


def _motif_arches(draw, rng, box, col, other, palette, unit) -> None:
    _motif_windows(draw, rng, box, col, other, palette, unit, arches=True)


def _motif_stripes(draw, rng, box, col, other, palette, unit) -> None:
    x0, y0, x1, y1 = box
    step = _uniform(rng, 1.5, 3.5) * unit
    width = max(1, int(step * _uniform(rng, 0.25, 0.5)))
    vertical = rng.random() < 0.5
    n = int(((x1 - x0) if vertical else (y1 - y0)) / step)
    for k in range(n + 1):
        if vertical:
            draw.line([x0 + k * step, y0, x0 + k * step, y1], fill=col, width=width)
        else:
            draw.line([x0, y0 + k * step, x1, y0 + k * step], fill=col, width=width)


def _motif_blobs(draw, rng, box, col, other, palette, unit) -> None:
    x0, y0, x1, y1 = box
    for _ in range(int(rng.integers(3, 8))):
        r = _uniform(rng, 1.5, 6) * unit
        cx, cy = _uniform(rng, x0, x1), _uniform(rng, y0, y1)
        draw.ellipse([cx - r, cy - r * _uniform(rng, 0.6, 1.4), cx + r, cy + r],
                     fill=_pick(rng, palette))


def _motif_rings(draw, rng, box, col, other, palette, unit) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = min(x1 - x0, y1 - y0) / 2
    width = max(1, int(unit * _uniform(rng, 0.6, 1.5)))
    for k, rk in enumerate(np.arange(r, 0, -2.2 * width)):
        draw.ellipse([cx - rk, cy - rk, cx + rk, cy + rk], outline=(col, other)[k % 2],
                     width=width)


def _motif_text(draw, rng, box, col, other, palette, unit) -> None:
    x0, y0, x1, y1 = box
    line_h = _uniform(rng, 1.0, 2.0) * unit
    y = y0
    while y + line_h < y1:
        x = x0
        while x < x1:
            word = _uniform(rng, 1.5, 6) * unit
            draw.rectangle([x, y, min(x + word, x1), y + line_h * 0.55], fill=col)
            x += word + line_h * 0.8
        y += line_h * 1.6


def _motif_checker(draw, rng, box, col, other, palette, unit) -> None:
    x0, y0, x1, y1 = box
    cell = _uniform(rng, 1.5, 3.5) * unit
    for i in range(int((x1 - x0) / cell)):
        for j in range(int((y1 - y0) / cell)):
            if (i + j) % 2 == 0:
                draw.rectangle([x0 + i * cell, y0 + j * cell, x0 + (i + 1) * cell,
                                y0 + (j + 1) * cell], fill=col)


def _motif_zigzag(draw, rng, box, col, other, palette, unit) -> None:
    x0, y0, x1, y1 = box
    n = int(rng.integers(4, 10))
    xs = np.linspace(x0, x1, n + 1)
    amp = (y1 - y0) / 2
    for k in range(int(rng.integers(1, 4))):
        yc = y0 + amp * (0.5 + k * 0.5)
        pts = [(float(x), float(yc + (amp / 2 if i % 2 else -amp / 2)))
               for i, x in enumerate(xs)]
        draw.line(pts, fill=(col, other)[k % 2], width=max(1, int(unit)))


_MOTIFS = {"windows": _motif_windows, "arches": _motif_arches, "stripes": _motif_stripes,
           "blobs": _motif_blobs, "rings": _motif_rings, "text": _motif_text,
           "checker": _motif_checker, "zigzag": _motif_zigzag}


def _draw_motif(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, motif: str,
    palette: tuple[Colour, ...], w: int, h: int,
) -> None:
    box = _region(rng, w, h)
    col, other = _pick(rng, palette), _pick(rng, palette)
    unit = max(w, h) / 40.0
    if motif not in _MOTIFS:
        raise ValueError(f"unknown motif {motif!r}")
    _MOTIFS[motif](draw, rng, box, col, other, palette, unit)


def _silhouette(shape: str, w: int, h: int) -> Image.Image:
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    if shape == "rect":
        d.rectangle([0, 0, w, h], fill=255)
    elif shape == "arch":
        d.rectangle([0, 0.25 * h, w, h], fill=255)
        d.ellipse([0, 0, w - 1, 0.5 * h], fill=255)
    elif shape == "gable":
        d.rectangle([0, 0.3 * h, w, h], fill=255)
        d.polygon([(0, 0.3 * h), (w / 2, 0), (w, 0.3 * h)], fill=255)
    elif shape == "round":
        d.ellipse([0, 0, w - 1, h - 1], fill=255)
    elif shape == "triangle":
        d.polygon([(w / 2, 0), (w - 1, h - 1), (0, h - 1)], fill=255)
    elif shape in ("star", "hexagon"):
        n, inner = (5, 0.45) if shape == "star" else (6, 1.0)
        angles = np.arange(2 * n) * np.pi / n - np.pi / 2
        radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
        pts = [((1 + r * np.cos(a)) * (w - 1) / 2, (1 + r * np.sin(a)) * (h - 1) / 2)
               for a, r in zip(angles, radii, strict=True)]
        d.polygon(pts, fill=255)
    else:
        raise ValueError(f"unknown silhouette {shape!r}")
    return mask


def draw_pattern(
    spec: PatternSpec, rng: np.random.Generator, size: int, palette_jitter: float = 0.0
) -> Image.Image:
    """Render ``spec`` as an RGBA texture whose longer side is ``size`` (alpha = outline).

    ``rng`` places the layout and motifs; ``palette_jitter`` (std of an RGB offset) varies the
    colours, which the classification set uses for intra-class variation.
    """
    if spec.aspect >= 1:
        w, h = size, max(8, round(size / spec.aspect))
    else:
        w, h = max(8, round(size * spec.aspect)), size
    palette = _jitter_palette(rng, spec.palette, palette_jitter)
    img = Image.new("RGB", (w, h), palette[0])
    draw = ImageDraw.Draw(img)
    _draw_layout(draw, rng, spec, palette, w, h)
    for motif in spec.motifs:
        _draw_motif(draw, rng, motif, palette, w, h)
    # fine detail: small marks all over
    n_fine = int(rng.integers(15, 35))
    xy = rng.uniform(0, 1, size=(n_fine, 2)) * (w, h)
    radius = max(1.0, size / 90)
    for x, y in xy:
        col = _pick(rng, palette)
        if rng.random() < 0.5:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=col)
        else:
            dx, dy = rng.uniform(-3, 3, 2) * radius
            draw.line([x, y, x + dx, y + dy], fill=col, width=1)
    img.putalpha(_silhouette(spec.silhouette, w, h))
    return img


def make_background(
    rng: np.random.Generator, size: int, n_shapes: int | None = None
) -> Image.Image:
    """Cluttered RGB scene: a smooth random colour field with random shapes and lines."""
    hue = _uniform(rng, 0, 1)
    field = np.array(
        [_hsv(hue + _uniform(rng, -0.15, 0.15), _uniform(rng, 0.05, 0.45), _uniform(rng, 0.25, 0.9))
         for _ in range(9)], dtype=np.uint8,
    ).reshape(3, 3, 3)
    img = Image.fromarray(field, "RGB").resize((size, size), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    n_shapes = int(rng.integers(8, 16)) if n_shapes is None else n_shapes
    for _ in range(n_shapes):
        col = _hsv(_uniform(rng, 0, 1), _uniform(rng, 0.0, 0.6), _uniform(rng, 0.15, 0.95))
        kind = rng.random()
        x0, y0 = rng.uniform(-0.1, 1.0, 2) * size
        ext = rng.uniform(0.05, 0.4, 2) * size
        box = [float(x0), float(y0), float(x0 + ext[0]), float(y0 + ext[1])]
        if kind < 0.35:
            draw.rectangle(box, fill=col)
        elif kind < 0.65:
            draw.ellipse(box, fill=col)
        elif kind < 0.85:
            pts = [tuple(float(v) for v in p) for p in rng.uniform(-0.1, 1.1, (3, 2)) * size]
            draw.polygon(pts, fill=col)
        else:
            draw.line(box, fill=col, width=int(rng.integers(1, max(2, size // 40))))
    return img


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ViewParams:
    """Geometry and photometry of one view. Lengths are fractions of the image side."""

    scale: float  # longer side of the unwarped object
    center: tuple[float, float]
    rotation: float  # degrees, in-plane
    yaw: float  # foreshortening of the left/right edges
    pitch: float  # foreshortening of the top/bottom edges
    jitter: float  # random corner displacement (fraction of object size)
    occlusion: float  # target occluded fraction of the object's box
    brightness: float
    contrast: float
    cast: tuple[float, float, float]
    shade: float  # strength of a linear illumination gradient
    blur: float  # Gaussian blur radius in pixels
    noise: float  # std of additive noise (0-1 intensity scale)


@dataclass(frozen=True)
class ViewInfo:
    """What a rendered view shows: visible fraction of the object, its size, its box."""

    kind: str
    visible: float  # visible area / full object area (out of frame and occlusion removed)
    scale: float  # sqrt(full object area) / image side
    box: tuple[float, float, float, float] | None  # x1, y1, x2, y2 of the visible object


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _mild(rng: np.random.Generator, strength: float) -> dict:
    """Small viewpoint/illumination changes; ``strength`` 0 (query) to 1 (easy)."""
    s = 0.5 + 0.5 * strength
    return {
        "scale": _uniform(rng, 0.5, 0.78),
        "center": (0.5 + _uniform(rng, -0.08, 0.08) * s, 0.5 + _uniform(rng, -0.08, 0.08) * s),
        "rotation": _uniform(rng, -10, 10) * s,
        "yaw": _uniform(rng, -0.16, 0.16) * s,
        "pitch": _uniform(rng, -0.08, 0.08) * s,
        "jitter": 0.03 * s,
        "occlusion": 0.0,
        "brightness": _uniform(rng, -0.08, 0.08) * s,
        "contrast": 1 + _uniform(rng, -0.12, 0.12) * s,
        "cast": tuple(1 + float(v) for v in rng.uniform(-0.05, 0.05, 3) * s),
        "shade": _uniform(rng, 0, 0.15) * s,
        "blur": 0.0,
        "noise": 0.0,
    }


HARD_FACTORS = ("viewpoint", "small", "crop", "occlusion", "light")
JUNK_FACTORS = ("tiny", "edge", "occluded")


def sample_view(rng: np.random.Generator, kind: ViewKind) -> ViewParams:
    """Draw view parameters aiming at ``kind`` (query, easy, hard, junk)."""
    if kind == "query":
        p = _mild(rng, 0.0)
        p["scale"] = _uniform(rng, 0.6, 0.78)
    elif kind == "easy":
        p = _mild(rng, 1.0)
        p["scale"] = _uniform(rng, 0.5, 0.85)
        if rng.random() < 0.4:
            p["occlusion"] = _uniform(rng, 0.03, 0.08)
    elif kind == "hard":
        p = _mild(rng, 1.0)
        for factor in rng.choice(HARD_FACTORS, size=2, replace=False):
            if factor == "viewpoint":
                p.update(yaw=_sign(rng) * _uniform(rng, 0.3, 0.5),
                         pitch=_sign(rng) * _uniform(rng, 0.1, 0.25),
                         rotation=_sign(rng) * _uniform(rng, 20, 40), jitter=0.07)
            elif factor == "small":
                p["scale"] = _uniform(rng, 0.3, 0.4)
            elif factor == "crop":
                p["scale"] = _uniform(rng, 0.95, 1.3)
                p["center"] = (0.5 + _sign(rng) * _uniform(rng, 0.15, 0.3),
                               0.5 + _sign(rng) * _uniform(rng, 0.0, 0.2))
            elif factor == "occlusion":
                p["occlusion"] = _uniform(rng, 0.25, 0.45)
            else:  # light
                p.update(brightness=_sign(rng) * _uniform(rng, 0.15, 0.28),
                         contrast=_uniform(rng, 0.55, 0.7) if rng.random() < 0.5
                         else _uniform(rng, 1.3, 1.5),
                         cast=tuple(1 + float(v) for v in rng.uniform(-0.2, 0.2, 3)),
                         shade=_uniform(rng, 0.35, 0.6), blur=_uniform(rng, 0.7, 1.4),
                         noise=_uniform(rng, 0.01, 0.03))
    elif kind == "junk":
        p = _mild(rng, 1.0)
        p.update(rotation=_uniform(rng, -30, 30), yaw=_uniform(rng, -0.4, 0.4), jitter=0.06)
        factor = rng.choice(JUNK_FACTORS)
        if factor == "tiny":
            p["scale"] = _uniform(rng, 0.09, 0.15)
            p["center"] = tuple(float(v) for v in rng.uniform(0.15, 0.85, 2))
        elif factor == "edge":
            p["scale"] = _uniform(rng, 0.55, 0.9)
            along = _uniform(rng, 0.25, 0.75)
            out = -p["scale"] * _uniform(rng, 0.18, 0.3)
            out = out if rng.random() < 0.5 else 1 - out
            p["center"] = (out, along) if rng.random() < 0.5 else (along, out)
        else:  # occluded
            p["scale"] = _uniform(rng, 0.4, 0.65)
            p["occlusion"] = _uniform(rng, 0.8, 0.9)
        p.update(blur=_uniform(rng, 0.0, 1.0), brightness=_uniform(rng, -0.2, 0.2))
    else:
        raise ValueError(f"kind must be one of query, easy, hard, junk; got {kind!r}")
    return ViewParams(**p)


def label_ok(kind: ViewKind, visible: float, scale: float) -> bool:
    """Whether a rendered view's measurements match its intended ``kind``.

    The bands leave gaps (0.25-0.35 visible, 0.15-0.18 size) so that labels are unambiguous.
    """
    if kind == "query":
        return visible >= 0.97 and scale >= 0.3
    if kind == "easy":
        return visible >= 0.85 and scale >= 0.28
    if kind == "hard":
        return visible >= 0.35 and scale >= 0.18
    if kind == "junk":
        return (0.03 <= visible < 0.25) or (scale < 0.15 and visible >= 0.5)
    raise ValueError(f"kind must be one of query, easy, hard, junk; got {kind!r}")


def _homography(dst: np.ndarray, src: np.ndarray) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return tuple(float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs)))


def _quad(rng: np.random.Generator, p: ViewParams, aspect: float, size: int) -> np.ndarray:
    """Corners TL, TR, BR, BL of the warped object in output pixels."""
    long_side = p.scale * size
    w, h = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    w *= 1 - 0.6 * abs(p.yaw)
    h *= 1 - 0.6 * abs(p.pitch)
    xs = np.array([-w / 2 * (1 - p.pitch), w / 2 * (1 - p.pitch), w / 2 * (1 + p.pitch),
                   -w / 2 * (1 + p.pitch)])
    ys = np.array([-h / 2 * (1 + p.yaw), -h / 2 * (1 - p.yaw), h / 2 * (1 - p.yaw),
                   h / 2 * (1 + p.yaw)])
    pts = np.stack([xs, ys], 1) + rng.normal(0, p.jitter * max(w, h), size=(4, 2))
    t = np.deg2rad(p.rotation)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return pts @ rot.T + np.array(p.center) * size


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _occluder_mask(
    rng: np.random.Generator, alpha: np.ndarray, target: float, size: int
) -> np.ndarray:
    """Random rectangles/ellipses over the object's box covering about ``target`` of it."""
    ys, xs = np.nonzero(alpha > 0.5)
    mask = Image.new("L", (size, size), 0)
    if target <= 0 or xs.size == 0:
        return np.zeros((size, size), np.float32)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    box_area = float((x1 - x0) * (y1 - y0))
    d = ImageDraw.Draw(mask)
    if target > 0.6:  # heavy: a wall across the object leaving one strip visible
        cover = target * (y1 - y0)
        top = y0 - 1 if rng.random() < 0.5 else y1 + 1 - cover
        d.rectangle([x0 - 1, top, x1 + 1, top + cover], fill=255)
        return np.asarray(mask, dtype=np.float32) / 255.0
    n = int(rng.integers(1, 4))
    for _ in range(n):
        area = box_area * target / n * 1.3
        ratio = float(np.exp(rng.uniform(-0.6, 0.6)))
        pw, ph = np.sqrt(area * ratio), np.sqrt(area / ratio)
        cx, cy = _uniform(rng, x0, x1), _uniform(rng, y0, y1)
        shape = [cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2]
        if rng.random() < 0.5:
            d.rectangle(shape, fill=255)
        else:
            d.ellipse(shape, fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def render_view(
    rng: np.random.Generator,
    texture: Image.Image | None,
    kind: ViewKind,
    size: int,
    params: ViewParams | None = None,
) -> tuple[Image.Image, ViewInfo]:
    """Render ``texture`` (RGBA, or None for a clutter-only image) on a fresh background.

    Returns the RGB image and its :class:`ViewInfo`. With ``params`` None the parameters are
    drawn with :func:`sample_view`.
    """
    img = make_background(rng, size)
    p = sample_view(rng, "easy" if texture is None else kind) if params is None else params
    info = ViewInfo(kind=kind, visible=0.0, scale=0.0, box=None)
    if texture is not None:
        tw, th = texture.size
        quad = _quad(rng, p, tw / th, size)
        extent = float(np.max(quad.max(0) - quad.min(0)))
        tex = texture
        if extent < 0.5 * max(tw, th):  # pre-shrink to limit aliasing of small views
            f = 2 * extent / max(tw, th)
            tex = texture.resize((max(4, round(tw * f)), max(4, round(th * f))),
                                 Image.Resampling.BOX)
        src = np.array([[0, 0], [tex.width, 0], [tex.width, tex.height], [0, tex.height]], float)
        warped = tex.transform((size, size), Image.Transform.PERSPECTIVE,
                               _homography(quad, src), Image.Resampling.BILINEAR)
        img = Image.alpha_composite(img.convert("RGBA"), warped).convert("RGB")
        alpha = np.asarray(warped.getchannel("A"), dtype=np.float32) / 255.0
        fill = float(np.asarray(texture.getchannel("A"), dtype=np.float32).mean() / 255.0)
        full_area = max(_polygon_area(quad) * fill, 1e-6)
        occ = _occluder_mask(rng, alpha, p.occlusion, size)
        if p.occlusion > 0:
            clutter = make_background(rng, size, n_shapes=20)
            img = Image.composite(clutter, img, Image.fromarray((occ * 255).astype(np.uint8), "L"))
        seen = alpha * (1 - occ)
        ys, xs = np.nonzero(seen > 0.5)
        box = None
        if xs.size:
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        info = ViewInfo(kind=kind, visible=min(float(seen.sum()) / full_area, 1.0),
                        scale=float(np.sqrt(full_area) / size), box=box)
    img = _photometric(img, p, rng)
    if p.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(p.blur))
    return img, info


def _photometric(img: Image.Image, p: ViewParams, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast, colour cast (one lookup table per channel), a linear shading
    gradient and sensor noise."""
    v = np.arange(256, dtype=np.float64) / 255.0
    lut = [
        np.clip(((v - 0.5) * p.contrast + 0.5 + p.brightness) * c, 0, 1) * 255 + 0.5
        for c in p.cast
    ]
    img = img.point(np.concatenate(lut).astype(np.uint8).tolist())
    if p.shade > 0:
        w, h = img.size
        t = _uniform(rng, 0, 2 * np.pi)
        field = (np.cos(t) * np.linspace(0, 1, w)[None, :]
                 + np.sin(t) * np.linspace(0, 1, h)[:, None])
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
        shade = Image.fromarray(((1 - p.shade * field) * 255 + 0.5).astype(np.uint8), "L")
        img = ImageChops.multiply(img, Image.merge("RGB", (shade, shade, shade)))
    if p.noise > 0:
        x = np.asarray(img, dtype=np.float32)
        x = x + (p.noise * 255) * rng.standard_normal(x.shape, dtype=np.float32)
        img = Image.fromarray((np.clip(x, 0, 255) + 0.5).astype(np.uint8), "RGB")
    return img


def render_labelled_view(
    rng: np.random.Generator, texture: Image.Image, kind: ViewKind, size: int, max_tries: int = 40
) -> tuple[Image.Image, ViewInfo]:
    """Render views until one's measurements match ``kind`` (:func:`label_ok`)."""
    for _ in range(max_tries):
        img, info = render_view(rng, texture, kind, size)
        if label_ok(kind, info.visible, info.scale):
            return img, info
    raise RuntimeError(f"could not render a {kind!r} view in {max_tries} tries (size {size})")
