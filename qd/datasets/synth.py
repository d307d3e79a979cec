"""The embedded default data set: procedurally drawn QuickDraw-style fruit doodles.

Each class has a drawing program that makes strokes (polylines) for a whole batch of images at
once, in QuickDraw's 256x256 space. The drawings are then centred, scaled to fit and rasterised to
28x28 the way Google rendered the official bitmaps: line diameter 16 and padding 16 in 256-space,
round caps and joins, anti-aliased white strokes on black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qd.core.data import FILES, IMAGE_SIDE, N_CLASSES
from qd.datasets.folders import COURSE_SIZES, check_sizes, is_current, write_course_folder

BUILDER = "qd data synth"
FORMAT_VERSION = 1  # part of the settings: a change to the drawing programs that changes the data bumps it
CHUNK = 4096  # images rendered per generator; part of the format (changing it changes the data)

_SCALE = IMAGE_SIDE / (256 + 2 * 16 + 16)  # 256-space plus padding and line diameter -> pixels
_SHIFT = (2 * 16 + 16) / 2
_REACH = 16 / 2 * _SCALE + 0.5  # a pixel centre this far from the pen's path gets no ink
_TAU = 2 * np.pi
_ORIGIN = np.zeros(2)

# Polyline batch (B, P, 2) and which of its segments are drawn (B, P - 1); False is a pen-up.
Stroke = tuple[np.ndarray, np.ndarray]


def _xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


def _unit(angle: np.ndarray) -> np.ndarray:
    return _xy(np.cos(angle), np.sin(angle))


def _stroke(pts: np.ndarray, keep: np.ndarray | None = None) -> Stroke:
    """A stroke of every segment of `pts` (B, P, 2); `keep` (B,) drops it from some images."""
    drawn = np.ones(pts.shape[:2], dtype=bool)[:, 1:]
    return pts, drawn if keep is None else drawn & keep[:, None]


def _pieces(pts: np.ndarray, keep: np.ndarray) -> Stroke:
    """Separate polylines (B, K, P, 2), kept where `keep` (B, K), as one stroke with pen-ups."""
    b, k, p, _ = pts.shape
    drawn = np.broadcast_to(keep[:, :, None], (b, k, p)).copy()
    drawn[:, :, -1] = False  # the jump from one piece's end to the next piece's start
    return pts.reshape(b, k * p, 2), drawn.reshape(b, k * p)[:, :-1]


def _arc(rng: np.random.Generator, centre, rx, ry, start, span, n: int, wobble: float) -> np.ndarray:
    """Points S + (n, 2) along elliptic arcs (parameters broadcast to S), with a wobbly radius."""
    start, span = np.broadcast_arrays(start, span)
    theta = start[..., None] + span[..., None] * np.linspace(0.0, 1.0, n)
    amp = rng.normal(0.0, wobble, (2, *start.shape, 1))
    phase = rng.uniform(0.0, _TAU, (2, *start.shape, 1))
    radius = 1 + amp[0] * np.sin(2 * theta + phase[0]) + amp[1] * np.sin(3 * theta + phase[1])
    x = np.asarray(rx)[..., None] * radius * np.cos(theta)
    y = np.asarray(ry)[..., None] * radius * np.sin(theta)
    return np.asarray(centre)[..., None, :] + _xy(x, y)


def _line(p0: np.ndarray, p1: np.ndarray, n: int, bend=0.0) -> np.ndarray:
    """Points S + (n, 2) from p0 to p1 (S + (2,)), bowed sideways by `bend` times the length."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    d = (p1 - p0)[..., None, :]
    side = _xy(-d[..., 1], d[..., 0])
    return p0[..., None, :] + t * d + np.asarray(bend)[..., None, None] * np.sin(np.pi * t) * side


def _leaf(base: np.ndarray, angle, length, width, n: int = 5) -> np.ndarray:
    """A closed almond-shaped leaf (B, 2n - 1, 2) from `base` along `angle`."""
    t = np.linspace(0.0, 1.0, n)
    along = np.concatenate([t, t[-2::-1]])
    across = np.concatenate([np.sin(np.pi * t), -np.sin(np.pi * t[-2::-1])])
    d = _unit(angle)[:, None, :]
    side = _xy(-d[..., 1], d[..., 0])
    length, width = np.asarray(length)[:, None, None], np.asarray(width)[:, None, None]
    return base[:, None, :] + length * (along[:, None] * d + width * across[:, None] * side)


def _zigzag(left: np.ndarray, right: np.ndarray, count: np.ndarray, fan, length, most: int) -> Stroke:
    """A spiky crown: `count` (B,) tips between bases on left..right, angles spread over `fan`."""
    j = np.arange(2 * most + 1)
    frac = np.minimum(j / 2, count[:, None]) / count[:, None]  # tips sit half-way between bases
    base = left[:, None, :] + frac[..., None] * (right - left)[:, None, :]
    a0, a1 = (np.asarray(a)[:, None] for a in fan)
    reach = np.where((j % 2 == 1) & (j < 2 * count[:, None]), np.asarray(length)[:, None], 0.0)
    return base + reach[..., None] * _unit(a0 + frac * (a1 - a0)), j[:-1] < 2 * count[:, None]


def _seeds(at: np.ndarray, count: np.ndarray, length: np.ndarray, angle: np.ndarray) -> Stroke:
    """Dots or short dashes at `at` (B, K, 2), the first `count` (B,) of them drawn."""
    ends = _line(at, at + length[..., None] * _unit(angle), 2)
    return _pieces(ends, np.arange(at.shape[1]) < count[:, None])


def _apple(rng: np.random.Generator, b: int) -> list[Stroke]:
    """A round body dented at the top, usually a stem, sometimes a leaf or a shine mark."""
    w, h = rng.uniform(95, 120, b), rng.uniform(85, 105, b)
    start, span = -np.pi / 2 + rng.normal(0, 0.35, b), _TAU + rng.uniform(-0.3, 0.35, b)
    body = _arc(rng, _ORIGIN, w, h, start, span, 28, 0.03)
    # The dent at the top (and a shallow one at the bottom): pull points near those angles inwards.
    angle = np.arctan2(body[..., 1], body[..., 0])
    top, bottom = rng.uniform(0.0, 0.28, (b, 1)), rng.uniform(0.0, 0.08, (b, 1))
    width = rng.uniform(0.25, 0.55, (b, 1))
    near_top = np.angle(np.exp(1j * (angle + np.pi / 2))) / width
    near_bottom = np.angle(np.exp(1j * (angle - np.pi / 2))) / width
    body *= (1 - top * np.exp(-(near_top**2)) - bottom * np.exp(-(near_bottom**2)))[..., None]
    stem_base = _xy(rng.normal(0, 5, b), -h * (1 - top[:, 0]) + 4)
    stem_up = _unit(-np.pi / 2 + rng.normal(0.15, 0.3, b))
    stem_top = stem_base + rng.uniform(30, 70, (b, 1)) * stem_up
    has_stem = rng.random(b) < 0.8
    stem = _line(stem_base, stem_top, 4, rng.normal(0, 0.15, b))
    along = np.where(has_stem, rng.uniform(0.2, 0.7, b), 0)[:, None]
    leaf_angle = -np.pi / 2 + np.where(rng.random(b) < 0.7, 1, -1) * rng.uniform(0.5, 1.4, b)
    leaf_base = stem_base + along * (stem_top - stem_base)
    leaf = _leaf(leaf_base, leaf_angle, rng.uniform(30, 55, b), rng.uniform(0.25, 0.45, b))
    start, span = np.pi + rng.normal(0, 0.2, b), rng.uniform(0.5, 1.0, b)
    shine = _arc(rng, _xy(-0.45 * w, -0.3 * h), 0.3 * w, 0.3 * h, start, span, 5, 0.0)
    return [
        _stroke(body),
        _stroke(stem, has_stem),
        _stroke(leaf, rng.random(b) < 0.45),
        _stroke(shine, rng.random(b) < 0.1),
    ]


def _banana(rng: np.random.Generator, b: int) -> list[Stroke]:
    """A crescent of two arcs meeting at the tips, often a stalk, sometimes a nub or a ridge."""
    span = rng.uniform(1.5, 2.6, b)[:, None]
    t = np.linspace(0.0, 1.0, 16)
    theta = np.pi / 2 + span * (t - 0.5)  # a crescent around the bottom of a circle of radius 100
    profile = np.sin(np.pi * t ** rng.uniform(0.7, 1.4, (b, 1))) ** 0.8
    thick = rng.uniform(18, 42, (b, 1))
    outer = _arc(rng, _ORIGIN, 100.0, 100.0, theta[:, 0], span[:, 0], 16, 0.02)
    inner = (100 - thick * profile)[..., None] * _unit(theta)
    tip0, tip1 = outer[:, 0], outer[:, -1]
    # The stalk and the nub leave the tips along the crescent's tangent.
    stalk_dir, nub_dir = _unit(theta[:, 0] - np.pi / 2), _unit(theta[:, -1] + np.pi / 2)
    stalk = _line(tip0, tip0 + rng.uniform(10, 25, (b, 1)) * stalk_dir, 3, rng.normal(0, 0.2, b))
    nub = _line(tip1, tip1 + rng.uniform(3, 8, (b, 1)) * nub_dir, 2)
    ridge = ((100 - 0.5 * thick * profile)[..., None] * _unit(theta))[:, 3:13]
    return [
        _stroke(np.concatenate([outer, inner[:, ::-1]], axis=1)),
        _stroke(stalk, rng.random(b) < 0.75),
        _stroke(nub, rng.random(b) < 0.3),
        _stroke(ridge, rng.random(b) < 0.2),
    ]


def _grape_slots() -> tuple[np.ndarray, np.ndarray]:
    """Triangular layouts (3, 15, 2) of 3, 4 or 5 rows, widest on top, and the slots each uses."""
    slots, used = np.zeros((3, 15, 2)), np.zeros((3, 15), dtype=bool)
    for layout, rows in enumerate((3, 4, 5)):
        xy = [(i - (rows - k - 1) / 2, k * 0.87) for k in range(rows) for i in range(rows - k)]
        slots[layout, : len(xy)] = xy
        used[layout, : len(xy)] = True
    return slots, used


def _grapes(rng: np.random.Generator, b: int) -> list[Stroke]:
    """A rough downward triangle of small circles, usually a stem, sometimes a leaf."""
    slots, used = _grape_slots()
    layout = rng.choice(3, b, p=[0.35, 0.45, 0.2])
    sp = 30.0
    centres = slots[layout] * sp + rng.normal(0, 0.18 * sp, (b, 15, 2))
    keep = used[layout] & (rng.random((b, 15)) < 0.9)
    keep[:, 0] = True
    r = sp * rng.uniform(0.5, 0.68, (b, 1)) * rng.uniform(0.85, 1.15, (b, 15))
    start, span = rng.uniform(0, _TAU, (b, 15)), _TAU + rng.uniform(-0.3, 0.5, (b, 15))
    circles = _arc(rng, centres, r, r * rng.uniform(0.85, 1.1, (b, 15)), start, span, 9, 0.05)
    top_x = (slots[layout, 0, 0] + slots[layout, :, 0].max(axis=1)) / 2 * sp
    stem_base = _xy(top_x + rng.normal(0, 0.3 * sp, b), np.full(b, -0.8 * sp))
    stem_up = _unit(-np.pi / 2 + rng.normal(0, 0.35, b))
    stem_top = stem_base + rng.uniform(0.8, 2.0, (b, 1)) * sp * stem_up
    leaf_base = stem_base + rng.uniform(0.2, 0.6, (b, 1)) * (stem_top - stem_base)
    leaf_angle = -np.pi / 2 + np.where(rng.random(b) < 0.5, 1, -1) * rng.uniform(0.6, 1.4, b)
    leaf = _leaf(leaf_base, leaf_angle, rng.uniform(1.2, 2.2, b) * sp, np.full(b, 0.5))
    return [
        _pieces(circles, keep),
        _stroke(_line(stem_base, stem_top, 4, rng.normal(0, 0.2, b)), rng.random(b) < 0.85),
        _stroke(leaf, rng.random(b) < 0.3),
    ]


def _hatch(rng: np.random.Generator, rx, ry, angle, count: np.ndarray, most: int) -> Stroke:
    """`count` (B,) parallel chords at `angle` across the ellipses (rx, ry) around the origin."""
    d, n = _unit(angle), _unit(angle + np.pi / 2)
    reach = np.hypot(rx * n[:, 0], ry * n[:, 1])[:, None]
    frac = -1 + 2 * (np.arange(most) + 1) / (np.maximum(count, 1)[:, None] + 1)
    off = (reach * (frac + rng.normal(0, 0.06, (len(rx), most))))[..., None] * n[:, None]
    # Solve |off + t d|_ellipse = 1 for t: a t^2 + 2 b' t + c = 0.
    w = np.stack([1 / rx**2, 1 / ry**2], axis=-1)[:, None]
    a = (d[:, None] ** 2 * w).sum(-1)
    bh = (off * d[:, None] * w).sum(-1)
    c = (off**2 * w).sum(-1) - 1
    root = np.sqrt(np.maximum(bh**2 - a * c, 0.0))
    shrink = rng.uniform(0.8, 1.02, (len(rx), most, 2))
    t = np.stack([(-bh - root) / a, (-bh + root) / a], axis=-1) * shrink
    ends = off[:, :, None] + t[..., None] * d[:, None, None]
    return _pieces(ends, np.arange(most) < count[:, None])


def _pineapple(rng: np.random.Generator, b: int) -> list[Stroke]:
    """A tall oval cross-hatched with diagonal chords, usually under a spiky crown."""
    rx, ry = rng.uniform(55, 85, b), np.full(b, 100.0)
    start, span = -np.pi / 2 + rng.normal(0, 0.4, b), _TAU + rng.uniform(-0.2, 0.3, b)
    body = _arc(rng, _ORIGIN, rx, ry, start, span, 24, 0.03)
    count = rng.integers(1, 5, (2, b))
    count[1] = np.clip(count[0] + rng.integers(-1, 2, b), 1, 5)
    count[1, rng.random(b) < 0.2] = 0
    count[:, rng.random(b) < 0.12] = 0
    half, crown_y = rng.uniform(0.2, 0.55, b) * rx, -0.92 * ry
    fan = -np.pi / 2 + rng.uniform(0.3, 0.9, (2, b)) * [[-1], [1]]
    spikes, length = rng.integers(3, 7, b), rng.uniform(35, 80, b)
    crown = _zigzag(_xy(-half, crown_y), _xy(half, crown_y), spikes, fan, length, 6)
    return [
        _stroke(body),
        _hatch(rng, rx, ry, np.pi / 4 + rng.normal(0, 0.2, b), count[0], 5),
        _hatch(rng, rx, ry, -np.pi / 4 + rng.normal(0, 0.2, b), count[1], 5),
        (crown[0], crown[1] & (rng.random(b) < 0.92)[:, None]),
    ]


def _strawberry(rng: np.random.Generator, b: int) -> list[Stroke]:
    """A cone-like body with seed dots or dashes, a spiky calyx on top, maybe a stem."""
    w, h = rng.uniform(75, 100, (b, 1)), 100.0
    sharp, flat = rng.uniform(0.5, 1.5, (b, 1)), rng.uniform(0.65, 0.9, (b, 1))

    def outline(t: np.ndarray) -> np.ndarray:  # an upside-down teardrop with a flattened top
        x = w * np.sin(t) * np.abs(np.sin(t / 2)) ** sharp
        return _xy(x, np.maximum(h * np.cos(t), -h * flat))

    start, span = np.pi + rng.normal(0, 0.3, (b, 1)), _TAU + rng.uniform(-0.2, 0.3, (b, 1))
    body = outline(start + span * np.linspace(0, 1, 28))
    centre = _xy(0.0, -0.1 * h)
    inward = np.sqrt(rng.random((b, 18, 1))) * 0.75
    at = centre + inward * (outline(rng.uniform(0, _TAU, (b, 18))) - centre)
    dash, angle = rng.uniform(1, 12, (b, 18)), rng.uniform(0, _TAU, (b, 18))
    seeds = _seeds(at, rng.integers(0, 19, b), dash, angle)
    top, half = -h * flat[:, 0], rng.uniform(0.25, 0.6, b) * w[:, 0]
    fan = np.array([[np.pi], [_TAU]]) + rng.uniform(-0.5, 0.3, (2, b)) * [[-1], [1]]
    spikes, length = rng.integers(3, 7, b), rng.uniform(25, 50, b)
    leaves = _zigzag(_xy(-half, top), _xy(half, top), spikes, fan, length, 6)
    stem_base = _xy(rng.normal(0, 4, b), top - 3)
    stem_up = _unit(-np.pi / 2 + rng.normal(0, 0.3, b))
    stem = _line(stem_base, stem_base + rng.uniform(15, 35, (b, 1)) * stem_up, 3)
    return [
        _stroke(body),
        seeds,
        (leaves[0], leaves[1] & (rng.random(b) < 0.9)[:, None]),
        _stroke(stem, rng.random(b) < 0.5),
    ]


def _watermelon(rng: np.random.Generator, b: int) -> list[Stroke]:
    """A slice (half-disc or wedge) with a rind line and seeds, or a whole striped melon."""
    whole = rng.random(b) < 0.25
    # A slice: a sector of a circle, a half-disc or a narrower wedge, with the rind at the arc.
    half = np.where(rng.random(b) < 0.55, rng.uniform(1.35, 1.62, b), rng.uniform(0.35, 0.75, b))
    start, span = np.pi / 2 - half, 2 * half
    arc = _arc(rng, _ORIGIN, 100.0, 100.0, start, span, 16, 0.02)
    apex = np.zeros((b, 1, 2))
    rind = rng.uniform(0.72, 0.9, b)
    inner = _arc(rng, _ORIGIN, 100 * rind, 100 * rind, start, span, 12, 0.02)
    angle = np.pi / 2 + rng.uniform(-0.8, 0.8, (b, 10)) * half[:, None]
    at = (rng.uniform(0.2, 0.95, (b, 10)) * 100 * rind[:, None])[..., None] * _unit(angle)
    count = np.where(whole, 0, rng.integers(0, 11, b))
    seeds = _seeds(at, count, rng.uniform(2, 12, (b, 10)), angle + rng.normal(0, 0.4, (b, 10)))
    # A whole melon: an oval with stripes running between its poles.
    ry = rng.uniform(50, 85, b)
    start, span = rng.uniform(0, _TAU, b), _TAU + rng.uniform(-0.2, 0.3, b)
    oval = _arc(rng, _ORIGIN, 100.0, ry, start, span, 24, 0.03)
    count = rng.integers(0, 6, b)
    u = -1 + 2 * (np.arange(5) + 1) / (np.maximum(count, 1)[:, None] + 1)
    u = u + rng.normal(0, 0.08, (b, 5))
    y = np.linspace(-0.97, 0.97, 7) * ry[:, None, None]
    stripes = _xy(u[..., None] * 100 * np.sqrt(1 - (y / ry[:, None, None]) ** 2), y)
    slice_ = ~whole
    return [
        _stroke(np.concatenate([apex, arc, apex], axis=1), slice_),
        _stroke(inner, slice_ & (rng.random(b) < 0.85)),
        seeds,
        _stroke(oval, whole),
        _pieces(stripes, (np.arange(5) < count[:, None]) & whole[:, None]),
    ]


_PROGRAMS = (_apple, _banana, _grapes, _pineapple, _strawberry, _watermelon)  # by class id
_ROTATION = (0.3, 1.2, 0.45, 0.25, 0.35, 0.7)  # std of each class's random tilt, in radians


def _draw(label: int, rng: np.random.Generator, b: int) -> Stroke:
    """`b` drawings of one class, each as one stroke: tilted, stretched, sheared, warped, shaky."""
    stray = rng.normal(0, 50, (b, 1, 2)) + np.cumsum(rng.normal(0, 20, (b, 4, 2)), axis=1)
    strokes = [*_PROGRAMS[label](rng, b), _stroke(stray, rng.random(b) < 0.12)]  # a stray mark
    sizes = [pts.shape[1] for pts, _ in strokes]
    # Each part is drawn a little off where it belongs.
    nudge = np.repeat(rng.normal(0, 3, (b, len(strokes), 2)), sizes, axis=1)
    x, y = np.moveaxis(np.concatenate([pts for pts, _ in strokes], axis=1) + nudge, -1, 0)
    pen_up = np.zeros((b, 1), dtype=bool)
    drawn = np.concatenate([part for _, d in strokes for part in (d, pen_up)], axis=1)[:, :-1]
    # Mirror, stretch, shear, then rotate.
    stretch = np.exp(rng.normal(0, 0.18, (b, 1)))
    x = x * np.where(rng.random((b, 1)) < 0.5, -1.0, 1.0) * stretch
    y = y / stretch
    x = x + rng.normal(0, 0.08, (b, 1)) * y
    angle = rng.normal(0, _ROTATION[label], (b, 1))
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = cos * x - sin * y, sin * x + cos * y
    # A smooth random warp (two plane waves per axis), then per-point tremor.
    freq = _TAU / rng.uniform(120, 300, (2, b, 1))
    heading = rng.uniform(0, _TAU, (2, b, 1))
    phase = rng.uniform(0, _TAU, (2, b, 1))
    wave = np.sin(freq * (np.cos(heading) * x + np.sin(heading) * y) + phase)
    amp = rng.normal(0, 7, (2, 2, b, 1))
    x = x + (amp[0] * wave).sum(0) + rng.normal(0, 1.5, x.shape)
    y = y + (amp[1] * wave).sum(0) + rng.normal(0, 1.5, y.shape)
    return np.stack([x, y], axis=-1), drawn


def _fit(drawing: Stroke) -> Stroke:
    """Centre each drawing's bounding box, scale its long side to 255, map to pixel coordinates."""
    pts, drawn = drawing
    used = np.zeros(pts.shape[:2], dtype=bool)
    used[:, 1:] |= drawn
    used[:, :-1] |= drawn
    lo = np.where(used[..., None], pts, np.inf).min(axis=1, keepdims=True)
    size = np.where(used[..., None], pts, -np.inf).max(axis=1, keepdims=True) - lo
    scale = 255 / np.maximum(size.max(axis=2, keepdims=True), 1e-6)
    return ((pts - lo) * scale + (256 - size * scale) / 2 + _SHIFT) * _SCALE, drawn


def _rasterise(drawing: Stroke) -> np.ndarray:
    """Anti-aliased strokes in pixel coordinates, round caps and joins, as uint8 (B, 28, 28)."""
    pts, drawn = drawing
    image, seg = np.nonzero(drawn)
    a, d = pts[image, seg], pts[image, seg + 1] - pts[image, seg]
    # Cut segments into pieces at most 1.5 px long per axis: each piece can only ink a 4x4 window.
    parts = np.maximum(np.ceil(np.abs(d).max(axis=1) / 1.5), 1).astype(np.int64)
    owner = np.repeat(np.arange(len(a)), parts)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(parts) - parts, parts)
    step = (d / parts[:, None]).astype(np.float32)[owner]
    start = a.astype(np.float32)[owner] + k[:, None].astype(np.float32) * step
    # The window's top-left pixel (drawings stay 2 px inside the edges: clipping loses no ink).
    corner = np.clip(np.ceil(np.minimum(start, start + step) - _REACH - 0.5), 0, IMAGE_SIDE - 4)
    start -= corner + 0.5
    window = np.arange(4, dtype=np.float32)
    col, row = np.tile(window, 4), np.repeat(window, 4)
    (x0, y0), (dx, dy) = start.T[..., None], step.T[..., None]
    rx, ry = col - x0, row - y0
    t = np.clip((rx * dx + ry * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0, 1)
    rx -= t * dx
    ry -= t * dy
    ink = np.clip(_REACH - np.sqrt(rx * rx + ry * ry), 0, 1)
    corner = corner.astype(np.int64)
    first = image[owner] * IMAGE_SIDE**2 + corner[:, 1] * IMAGE_SIDE + corner[:, 0]
    index = first[:, None] + (row * IMAGE_SIDE + col).astype(np.int64)
    out = np.zeros(len(pts) * IMAGE_SIDE**2, dtype=np.float32)
    np.maximum.at(out, index.ravel(), ink.ravel())  # where strokes overlap, the nearest one wins
    return np.round(out * 255).astype(np.uint8).reshape(len(pts), IMAGE_SIDE, IMAGE_SIDE)


def render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one doodle per label (class ids 0-5): uint8 (N, 28, 28), white strokes on black."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.isin(labels, np.arange(N_CLASSES)).all():
        raise ValueError(f"labels: expected a 1-D array of class ids 0-{N_CLASSES - 1}")
    images = np.zeros((len(labels), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for label in range(N_CLASSES):
        which = np.flatnonzero(labels == label)
        if len(which):
            images[which] = _rasterise(_fit(_draw(label, rng, len(which))))
    return images


def _split(seed: int, split: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One class-balanced, shuffled split; every CHUNK of images has its own seeded generator."""
    labels = np.repeat(np.arange(N_CLASSES, dtype=np.int64), size // N_CLASSES)
    np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split,))).shuffle(labels)
    images = np.empty((size, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for chunk, first in enumerate(range(0, size, CHUNK)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split, chunk)))
        images[first : first + CHUNK] = render(labels[first : first + CHUNK], rng)
    return images, labels


def write_synthetic(out_dir: str | Path, seed: int = 0, sizes: tuple[int, int, int] = COURSE_SIZES) -> Path:
    """Write the synthetic course files (train, dev, test splits) and their manifest into `out_dir`.

    Does nothing if the folder already holds this exact set; refuses (QDError) a folder it did not write.
    """
    out = Path(out_dir)
    sizes = check_sizes(sizes, seed)
    settings = {"seed": seed, "sizes": dict(zip(FILES, sizes, strict=True)), "format_version": FORMAT_VERSION}
    if is_current(out, BUILDER, settings):
        return out
    splits = ((split, *_split(seed, i, size)) for i, (split, size) in enumerate(zip(FILES, sizes, strict=True)))
    return write_course_folder(out, BUILDER, settings, splits)
