"""The ShapeWorld analyzer: what a video shows, measured from its pixels alone.

Every number the project reports about a generated video — prompt adherence,
compositional generalisation, physics, object permanence, storyboard segments —
comes from here, so the analyzer is itself benchmarked against ShapeWorld's
ground truth (bench/analyzer_agreement.py), on clean clips and on blurred,
noisy, colour-cast and flickering ones.

How it reads a clip, and why this way:

1. Background: every named background (shared/shapeworld.md) is a colour per
   row (the sky is a vertical gradient). The template most pixels agree with
   names it; the model is then the per-row mean of the pixels near it, plus a
   per-frame offset, so a generated video whose background is a little off, or
   flickers, still has an exact model.
2. Occluder: the pole is static, in front of everything and full-height, so
   its columns are where nearly every pixel blends background and pole grey.
   Columns it covers more than half are ignored (nothing behind them can be
   seen); on its anti-aliased or blurred edges the blend is undone.
3. Pixels: an object pixel is a blend `p = b + a * (s * c - b)` of the
   background b and a palette colour c under shading s (the renderer's
   highlight is within +-12%). Unmixing each pixel against every (c, s) gives
   its colour *and* its coverage a; nearest-colour alone would call the
   red-on-sand edge "orange". Two objects never share a colour, so a colour is
   an object (a colour change mid-clip is joined back into one object).
4. Shape: the complex moments C_k = sum a (z - centroid)^k, normalised by the
   area, are rotation and scale invariant and — because an isotropic blur has
   no z^k moments of its own — exactly invariant to Gaussian blur too. A
   circle has none, a square only k = 4 (4-fold symmetry), a triangle k = 3.
   They are taken on frames where the object is whole (not cut by the frame
   edge, the pole or the other object). An object never seen whole is judged
   by fitting each shape's rendered template to the part that shows.
5. Motion: from the centre track. Where the object is cut, the centroid of what
   shows is biased, so the centre comes from a template fit instead. A line
   fit says whether and where it travels, a piecewise parabola with one shared
   downward acceleration (`fit_bounce`) says whether it falls and bounces, and
   the orientation arg(C_4)/4 or arg(C_3)/3 turning in place says it spins.
6. Permanence: an object must go on being seen, with the same colour, until it
   leaves the frame or the clip ends; vanishing at the pole, or coming out of
   it recoloured, breaks permanence.

Speeds and tolerances are stated "at 64 px" like the world's, and scaled by
min(H, W) / 64 so every size and aspect ratio is read the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..shapeworld.render import _sdf
from ..shapeworld.world import BACKGROUNDS, MOTIONS, OCCLUDER_RGB, PALETTE, SHAPES, SIZES

# ----------------------------------------------------------------------------
# Constants (pixel values on the 0..255 scale; lengths in px at 64 px)
# ----------------------------------------------------------------------------

COLOUR_NAMES = tuple(PALETTE)
PALETTE_RGB = np.array([PALETTE[c] for c in COLOUR_NAMES], np.float32)  # (K, 3)
SHADES = np.array([0.88, 1.0, 1.12], np.float32)  # the renderer's highlight range (the residual tolerance covers between)
SHADED_RGB = np.minimum(PALETTE_RGB[:, None, :] * SHADES[None, :, None], 255.0).reshape(-1, 3)  # (K*S, 3)
OCCLUDER = np.array(OCCLUDER_RGB, np.float32)

FOREGROUND_DISTANCE = 36.0  # RGB distance from the background that makes a pixel foreground
MIN_COVERAGE = 0.5  # a pixel belongs to a colour when at least half of it is that colour
# normalised |C_3| / A^2.5 of an equilateral triangle and |C_4| / A^3 of a square (circle: 0, 0)
TRIANGLE_C3 = 0.06754
SQUARE_C4 = 0.01667
# area / radius^2 of each shape with circumradius r (used to turn area into a size class)
AREA_FACTOR = {"circle": math.pi, "square": 2.0, "triangle": 3 * math.sqrt(3) / 4}
MAX_REFINED = 12  # template fits per object for frames where it is cut (the slow path)
BOTTOM_EXTENT = {"circle": 1.0, "square": 1 / math.sqrt(2), "triangle": 0.5}  # centre to lowest point / r


# ----------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------

@dataclass
class Track:
    """Per-frame measurements of one object over the analysed frames (absolute frame numbers)."""

    frames: np.ndarray  # (T,) frame indices into the input clip
    x: np.ndarray  # (T,) centre, px: the centroid, or a template fit's centre where the object is cut; nan: unseen
    y: np.ndarray  # (T,)
    area: np.ndarray  # (T,) visible area, px (soft coverage), 0 where not visible
    visible: np.ndarray  # (T,) bool
    whole: np.ndarray  # (T,) bool: not cut by the frame edge, the pole or another object
    at_edge: np.ndarray  # (T,) bool: touches the frame edge
    at_pole: np.ndarray  # (T,) bool: touches the pole (partly behind it)
    at_other: np.ndarray  # (T,) bool: touches another object (one of them hides part of the other)
    angle: np.ndarray  # (T,) orientation in degrees from the shape moments; nan where unknown
    colour: list  # (T,) palette name per frame, None where not visible


@dataclass
class BounceFit:
    """A piecewise-parabola fit of the vertical track: free fall with one shared
    gravity, broken at floor contacts. `physical` is the verdict."""

    physical: bool
    gravity: float  # px / frame^2, positive = toward the bottom edge
    gravity_64: float  # the same at 64 px (ShapeWorld uses 0.25)
    residual: float  # RMS of the fit, px
    contacts: list  # fractional frame times of the floor contacts
    restitution: list  # speed after / speed before, per contact
    floor_gap: Optional[float]  # px between the object's lowest point at contact and the bottom edge
    reason: str  # why `physical` is what it is


@dataclass
class Permanence:
    """Object permanence for one object, above all across the occluder pole."""

    occluded: bool  # the object went (at least partly) behind the pole
    crossed: bool  # its centre came out on the other side of the pole
    holds: Optional[bool]  # True: seen through the occlusion; False: vanished (at the pole or in plain
    #                        view) or changed colour behind the pole; None: never occluded, nothing wrong
    reason: str


@dataclass
class ObjectAnalysis:
    colour: str  # palette name (the colour seen in most frames)
    shape: str  # circle / square / triangle
    size: str  # small / medium / large
    motion: str  # left / right / up / down / bounce / still / spin
    track: Track
    colours: list  # distinct colours in order of appearance (a storyboard colour change gives two)
    radius: float  # estimated circumradius, px
    velocity: tuple  # (vx, vy) px / frame from a line fit
    angular_speed: float  # degrees / frame (signed)
    shape_scores: dict  # {"c3": ..., "c4": ...}: normalised moment strengths (triangle ~1, square ~1)
    bounce: Optional[BounceFit] = None  # the gravity fit of the vertical track (>= 4 usable frames)
    permanence: Optional[Permanence] = None  # set on clips of more than one frame

    @property
    def mean_area(self) -> float:
        return float(self.track.area[self.track.visible].mean()) if self.track.visible.any() else 0.0


@dataclass
class VideoAnalysis:
    background: str  # black / gray / sand / sky / paper
    height: int
    width: int
    frame_range: tuple  # (start, end) analysed, end exclusive
    objects: list = field(default_factory=list)  # list[ObjectAnalysis], largest first
    occluder_x: Optional[float] = None  # pole centre, px; None: no pole
    occluder_width: float = 0.0

    @property
    def num_frames(self) -> int:
        return self.frame_range[1] - self.frame_range[0]


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------

def _as_frames(frames) -> np.ndarray:
    """(F, H, W, 3) float32 on the 0..255 scale from uint8 or float-in-[0, 1] input."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array (F, H, W, 3), got {type(frames).__name__}")
    if frames.ndim == 3:  # one image
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames.shape={frames.shape} is not allowed; expected (F, H, W, 3) or (H, W, 3) RGB")
    F, H, W, _ = frames.shape
    if F < 1 or H < 16 or W < 16:
        raise ValueError(f"frames.shape={frames.shape}: need at least 1 frame of at least 16x16 pixels")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32)
    if np.issubdtype(frames.dtype, np.floating):
        if not np.isfinite(frames).all():
            raise ValueError("float frames must lie in [0, 1]; got NaN or infinite values")
        lo, hi = float(frames.min()), float(frames.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float frames must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}] "
                             f"(pass uint8 for 0..255)")
        return np.clip(frames.astype(np.float32), 0, 1) * 255.0
    raise ValueError(f"frames.dtype={frames.dtype} is not allowed; use uint8 (0..255) or float (0..1)")


def _check_range(frame_range, num_frames: int) -> tuple[int, int]:
    if frame_range is None:
        return 0, num_frames
    try:
        start, end = (int(v) for v in frame_range)
    except (TypeError, ValueError):
        raise ValueError(f"frame_range={frame_range!r} must be a pair (start, end)") from None
    if not 0 <= start < end <= num_frames:
        raise ValueError(f"frame_range={frame_range!r} must satisfy 0 <= start < end <= {num_frames} "
                         f"(the clip has {num_frames} frames; end is exclusive)")
    return start, end


# ----------------------------------------------------------------------------
# Background and occluder
# ----------------------------------------------------------------------------

def _background_rows(name: str, height: int) -> np.ndarray:
    """(H, 3) the named background's colour per row, as the renderer draws it."""
    top, bottom = (np.array(c, np.float32) for c in BACKGROUNDS[name])
    t = (np.arange(height, dtype=np.float32) + 0.5) / height
    return (1 - t)[:, None] * top + t[:, None] * bottom


def _sample_frames(x: np.ndarray, n: int = 9) -> np.ndarray:
    """A few frames spread over the clip: the background and pole are static."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int))
    return x[idx]


def _estimate_background(x: np.ndarray, keep_columns: Optional[np.ndarray] = None) -> tuple[str, np.ndarray]:
    """(name, (H, 3) per-row model). The name is the template most pixels agree with;
    the model is the per-row mean of the pixels near that template (twice, the
    second time tighter, so object edges drop out), falling back to the template
    on rows the objects cover. An unfamiliar background is modelled from the
    data and named after the nearest template."""
    sample = _sample_frames(x, 4)[:, :, ::2]  # (S, H, W/2, 3): plenty of pixels per row
    if keep_columns is not None:
        sample = sample[:, :, keep_columns[::2]]
    H = x.shape[1]
    per_row = sample.transpose(1, 0, 2, 3).reshape(H, -1, 3)  # (H, N, 3)
    names = list(BACKGROUNDS)
    templates = {n: _background_rows(n, H) for n in names}
    dist2 = {n: ((per_row - templates[n][:, None, :]) ** 2).sum(-1) for n in names}  # (H, N)
    fractions = {n: float((dist2[n] < 30 ** 2).mean()) for n in names}
    best = max(names, key=fractions.get)
    if fractions[best] < 0.3:  # an unfamiliar background: trust the data, name the nearest template
        model = np.median(per_row, axis=1)
        best = min(names, key=lambda n: float(np.linalg.norm(templates[n] - model, axis=1).mean()))
        return best, model.astype(np.float32)
    model = templates[best]
    for radius in (60.0, 25.0):  # mean of the pixels near the model, twice: objects and their edges drop out
        near = ((per_row - model[:, None, :]) ** 2).sum(-1) < radius ** 2  # (H, N)
        count = near.sum(1, keepdims=True)  # (H, 1)
        mean = (per_row * near[..., None]).sum(1) / np.maximum(count, 1)
        model = np.where(count > 0.15 * per_row.shape[1], mean, templates[best])  # rows the objects cover: template
    return best, model.astype(np.float32)


def _grow(pole: tuple[int, int], width: int, margin: int) -> np.ndarray:
    """(W,) bool: the pole's columns and `margin` more on each side."""
    cols = np.zeros(width, bool)
    cols[max(pole[0] - margin, 0):pole[1] + margin + 1] = True
    return cols


def _find_pole(x: np.ndarray, bg: np.ndarray) -> Optional[tuple[int, int, np.ndarray]]:
    """(first, last, coverage (W,)) of the occluder pole, or None.

    The pole is static, in front of everything and spans the full height, so in
    its columns nearly every pixel is a blend of the background and the pole
    grey: the median over time and rows of each pixel's pole coverage
    c = (p - b).(pole - b) / |pole - b|^2 is ~1 inside, fractional on its
    anti-aliased or blurred edges and ~0 elsewhere.
    """
    W = x.shape[2]
    if len(x) < 2:  # a single image cannot tell a pole from a grey block
        return None
    sample = _sample_frames(x, 5)[:, ::2]  # (S, H/2, W, 3): every column, a share of the rows
    bg = bg[::2]
    d = OCCLUDER[None, :] - bg  # (H/2, 3)
    pb = sample - bg[None, :, None, :]  # (S, H/2, W, 3)
    c = (pb * d[None, :, None, :]).sum(-1) / np.maximum((d * d).sum(-1), 1.0)[None, :, None]  # (S, H/2, W)
    off_line = np.linalg.norm(pb - c[..., None] * d[None, :, None, :], axis=-1)  # (S, H/2, W)
    column = np.median(c.transpose(2, 0, 1).reshape(W, -1), axis=1)  # (W,)
    straight = np.median(off_line.transpose(2, 0, 1).reshape(W, -1), axis=1) < 25  # (W,) on the bg-pole line
    inside = (column > 0.5) & straight
    runs, start = [], None
    for i, g in enumerate(list(inside) + [False]):
        if g and start is None:
            start = i
        elif not g and start is not None:
            runs.append((start, i - 1))
            start = None
    if not runs:
        return None
    first, last = max(runs, key=lambda r: r[1] - r[0])
    centre = (first + last) // 2
    full_height = float((c[:, :, centre] > 0.5).mean())  # nothing passes in front of the pole
    width = float(np.clip(column[max(first - 3, 0):last + 4], 0, 1).sum())
    if column[first:last + 1].max() < 0.8 or full_height < 0.9 or not max(2.0, 0.04 * W) <= width <= 0.25 * W:
        return None
    cover = np.zeros(W, np.float32)
    near = slice(max(first - 3, 0), min(last + 4, W))
    cover[near] = np.clip(column[near], 0, 1) * straight[near]
    cover[first:last + 1] = 1.0
    return first, last, cover


# ----------------------------------------------------------------------------
# Pixels: colour and coverage by unmixing against the background
# ----------------------------------------------------------------------------

def _unmix(pixels: np.ndarray, bg: np.ndarray, chunk: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """For (N, 3) pixels over (N, 3) background: (label (N,), coverage (N,)).
    label is a palette index or -1 where no palette colour explains the pixel.

    With pb = p - b and d = c - b for each shaded palette colour c, the coverage is
    a = clip(pb.d / |d|^2) and the residual |pb - a d|; every dot product is a
    (n, 3) @ (3, K*S) matmul, so the whole thing is a few array passes.
    """
    labels = np.full(len(pixels), -1, np.int64)
    cover = np.zeros(len(pixels), np.float32)
    C = SHADED_RGB  # (KS, 3)
    CC = (C * C).sum(1)  # (KS,)
    for i in range(0, len(pixels), chunk):
        p, b = pixels[i:i + chunk], bg[i:i + chunk]
        pb = p - b  # (n, 3)
        pbd = pb @ C.T - (pb * b).sum(1, keepdims=True)  # (n, KS)  pb . (c - b)
        dd = np.maximum(CC[None] - 2 * (b @ C.T) + (b * b).sum(1, keepdims=True), 1.0)  # (n, KS)  |c - b|^2
        a = np.clip(pbd / dd, 0, 1.25)
        resid2 = (pb * pb).sum(1, keepdims=True) - 2 * a * pbd + a * a * dd  # (n, KS)  |pb - a d|^2
        j = resid2.argmin(1)
        n = np.arange(len(p))
        best_a, best_r = a[n, j], np.sqrt(np.maximum(resid2[n, j], 0))
        ok = (best_a >= MIN_COVERAGE) & (best_r <= 30 + 0.25 * best_a * np.sqrt(dd[n, j]))
        labels[i:i + chunk] = np.where(ok, j // len(SHADES), -1)
        cover[i:i + chunk] = np.minimum(best_a, 1.0)
    return labels, cover


def _coverage(x: np.ndarray, bg_rows: np.ndarray, k: int) -> np.ndarray:
    """(..., H, W) coverage of palette colour k over the background, clipped to [0, 1]."""
    d = PALETTE_RGB[k][None, :] - bg_rows  # (H, 3)
    return np.clip(((x - bg_rows[:, None, :]) * d[:, None, :]).sum(-1) / (d * d).sum(-1)[:, None], 0, 1)


# ----------------------------------------------------------------------------
# Shape, size and orientation from moments
# ----------------------------------------------------------------------------

def _moments(w: np.ndarray, y0: int, x0: int):
    """(area, cx, cy, C3, C4) of a (h, w) weight patch whose top-left pixel is (y0, x0)."""
    area = float(w.sum())
    if area <= 0:
        return 0.0, math.nan, math.nan, 0j, 0j
    ys, xs = np.nonzero(w > 0)
    ww = w[ys, xs]
    px, py = xs + x0 + 0.5, ys + y0 + 0.5  # pixel centres
    cx, cy = float((ww * px).sum() / area), float((ww * py).sum() / area)
    z = (px - cx) + 1j * (py - cy)
    z3 = z ** 3
    return area, cx, cy, complex((ww * z3).sum()), complex((ww * z3 * z).sum())


def classify_shape(c3: float, c4: float) -> str:
    """Nearest prototype in the plane of normalised moment strengths:
    circle (0, 0), square (0, 1), triangle (1, 0)."""
    d = {"circle": c3 ** 2 + c4 ** 2, "square": c3 ** 2 + (c4 - 1) ** 2, "triangle": (c3 - 1) ** 2 + c4 ** 2}
    return min(d, key=d.get)


def classify_size(radius: float, height: int, width: int) -> str:
    """Nearest size class by circumradius as a fraction of the shorter side."""
    ratio = radius / min(height, width)
    return min(SIZES, key=lambda s: abs(SIZES[s] - ratio))


# ----------------------------------------------------------------------------
# Motion: lines, parabolas, bounces, spins
# ----------------------------------------------------------------------------

def _line(t: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, rms) of a least-squares line."""
    if len(t) < 2:
        return 0.0, float(v[0]) if len(v) else 0.0, 0.0
    A = np.stack([t, np.ones_like(t)], 1)
    coef, *_ = np.linalg.lstsq(A, v, rcond=None)
    return float(coef[0]), float(coef[1]), float(np.sqrt(np.mean((A @ coef - v) ** 2)))


def _piecewise_parabola(t: np.ndarray, y: np.ndarray, breaks: Sequence[int]):
    """Fit y with one parabola per piece (pieces start at indices `breaks`) sharing
    the acceleration. Returns (g, [(a_j, b_j)], rms)."""
    starts = [0] + list(breaks)
    ends = list(breaks) + [len(t)]
    cols = []
    for s, e in zip(starts, ends):
        ind = np.zeros(len(t))
        ind[s:e] = 1
        cols += [ind, ind * t]
    cols.append(0.5 * t * t)
    A = np.stack(cols, 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    rms = float(np.sqrt(np.mean((A @ coef - y) ** 2)))
    pieces = [(float(coef[2 * j]), float(coef[2 * j + 1])) for j in range(len(starts))]
    return float(coef[-1]), pieces, rms


def fit_bounce(t, y, height: Optional[int] = None, bottom_extent: float = 0.0, scale: float = 1.0,
               jitter: float = 0.0) -> BounceFit:
    """Fit a vertical track (image y, down positive) with free fall under one
    gravity and floor bounces, and judge whether it is physical.

    t: frame times (need not be consecutive); y: centre y, px. `height` and
    `bottom_extent` (centre to lowest point, px) let the fit check that the
    contacts happen at the bottom edge; `scale` = min(H, W) / 64; `jitter` (px)
    is the track's noise level, below which a dip is not taken for a contact.
    Physical means: downward gravity, a tight fit, every contact a real
    rebound that loses (not gains) speed, all contacts at one floor.
    """
    t = np.asarray(t, np.float64)
    y = np.asarray(y, np.float64)
    if len(t) < 4:
        return BounceFit(False, 0.0, 0.0, 0.0, [], [], None, "too few frames to fit gravity")
    t0 = t[0]
    tt = t - t0
    tol = max(0.3 * scale, 2.0 * jitter)
    # floor contacts: local maxima of y (the lowest positions on screen) followed by a rise
    candidates = [i for i in range(1, len(t) - 1)
                  if y[i] >= y[i - 1] - tol and y[i] > y[i + 1] + tol and y[i] - y[i - 1] > -tol
                  and (i < 2 or y[i] - y[i - 2] > tol)]
    breaks: list[int] = []
    for i in candidates:  # the piece after a contact starts at i or i + 1: keep the better fit
        options = [b for b in (i, i + 1) if (breaks[-1] if breaks else 0) < b < len(t)]
        if options:
            fits = [(_piecewise_parabola(tt, y, breaks + [b])[2], b) for b in options]
            breaks.append(min(fits)[1])
    # a contact right after the first frame or right before the last leaves a 1-point
    # piece: the speed reverses (or drops) at once instead of growing by g
    n = len(t)
    if n >= 4 and y[1] - y[0] > tol and y[2] - y[1] < -tol and (not breaks or breaks[0] > 1):
        breaks.insert(0, 1)
    if n >= 4 and y[-2] - y[-3] > tol and (y[-1] - y[-2]) < (y[-2] - y[-3]) - 3 * tol and n - 1 not in breaks:
        breaks.append(n - 1)
    g, pieces, rms = _piecewise_parabola(tt, y, breaks)
    contacts, restitution, floors = [], [], []
    edges = [0] + breaks + [n]
    for j, b in enumerate(breaks):
        (a0, b0), (a1, b1) = pieces[j], pieces[j + 1]
        tc = (a1 - a0) / (b0 - b1) if abs(b0 - b1) > 1e-9 else tt[b]
        tc = float(np.clip(tc, tt[b - 1], tt[b]))
        contacts.append(tc + t0)
        if edges[j + 1] - edges[j] < 2 or edges[j + 2] - edges[j + 1] < 2:
            continue  # a 1-point piece has no velocity: the contact is seen, its restitution is not
        v_before, v_after = b0 + g * tc, b1 + g * tc
        restitution.append(float(-v_after / v_before) if v_before > 1e-6 else math.inf)
        floors.append(a0 + b0 * tc + 0.5 * g * tc * tc)
    floor_gap = None
    if floors and height is not None:
        floor_gap = float(height - (np.mean(floors) + bottom_extent))

    g64 = g / scale
    if g64 < 0.05:
        reason = f"no downward acceleration (gravity {g64:.3f} px/frame^2 at 64 px)"
    elif rms > 0.4 * scale + 0.15 + jitter:
        reason = f"the track is not a free fall (fit residual {rms:.2f} px)"
    elif any(not 0.2 <= e <= 1.05 for e in restitution):
        reason = f"a contact gains speed or does not rebound (restitution {restitution})"
    elif floors and np.ptp(floors) > 2.0 * scale + 0.05 * np.ptp(y):
        reason = f"contacts happen at different heights ({np.round(floors, 1).tolist()})"
    elif floor_gap is not None and abs(floor_gap) > 4.0 * scale:
        reason = f"the floor is {floor_gap:.1f} px above the bottom edge"
    else:
        reason = "free fall under gravity" + (f" with {len(contacts)} floor bounce(s)" if contacts else "")
        return BounceFit(True, g, g64, rms, contacts, restitution, floor_gap, reason)
    return BounceFit(False, g, g64, rms, contacts, restitution, floor_gap, reason)


# ----------------------------------------------------------------------------
# Segmentation: one object per palette colour
# ----------------------------------------------------------------------------

@dataclass
class _Scan:
    """What every object measurement shares."""

    x: np.ndarray  # (F, H, W, 3) analysed frames, 0..255, pole edges un-blended
    bg: np.ndarray  # (F, H, 3) background per frame and row
    labels: np.ndarray  # (F, H, W) int8 palette index, -1 none
    cover: np.ndarray  # (F, H, W) coverage of the labelled colour
    blocked: np.ndarray  # (W,) bool: columns the pole hides
    scale: float  # min(H, W) / 64


_FRAME_CONNECTIVITY = np.zeros((3, 3, 3), bool)
_FRAME_CONNECTIVITY[1] = ndimage.generate_binary_structure(2, 2)  # 8-connected within a frame, not across time
_FRAME_CROSS = np.zeros((3, 3, 3), bool)
_FRAME_CROSS[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected within a frame


def _scan(x: np.ndarray, bg: np.ndarray, blocked: np.ndarray) -> _Scan:
    F, H, W, _ = x.shape
    bg = bg[None] + _frame_offsets(x, bg, blocked)  # (F, H, 3)
    diff = x - bg[:, :, None, :]  # (F, H, W, 3)
    fg = ((diff * diff).sum(-1) > FOREGROUND_DISTANCE ** 2) & ~blocked[None, None, :]  # (F, H, W)
    labels = np.full((F, H, W), -1, np.int8)
    cover = np.zeros((F, H, W), np.float32)
    idx = np.nonzero(fg)
    if len(idx[0]):
        lab, cov = _unmix(x[idx], bg[idx[0], idx[1]])
        labels[idx], cover[idx] = lab, cov
    return _Scan(x, bg, labels, cover, blocked, min(H, W) / 64.0)


def _frame_offsets(x: np.ndarray, bg: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """(F, H, 3) per-frame shift of the background (exposure flicker in a generated
    video). First one colour shift per frame, the median difference of its
    background-like pixels from the model; then, on frames that do shift, a
    per-row mean correction, since a gain changes a gradient (the sky) unevenly.
    Shifts under 2 levels are left at 0 so clean clips stay exact."""
    F, H = x.shape[:2]
    offsets = np.zeros((F, H, 3), np.float32)
    sub = x[:, ::2, ::2][:, :, ~blocked[::2]]  # (F, H/2, W', 3)
    diff = sub - bg[None, ::2, None, :]
    near = (diff * diff).sum(-1) < 80 ** 2  # (F, H/2, W') generous: the model itself may sit between frames
    count = near.sum((1, 2))  # (F,)
    mean = (diff * near[..., None]).sum((1, 2)) / np.maximum(count, 1)[:, None]  # (F, 3) a cheap first look
    for f in np.nonzero((np.abs(mean).max(1) >= 1.0) & (count > 0.3 * near[0].size))[0]:
        shift = np.median(diff[f][near[f]], axis=0)  # robust to object edges near the background colour
        if np.abs(shift).max() < 2.0:
            continue
        rows = x[f][:, ~blocked] - (bg + shift)[:, None, :]  # (H, W', 3)
        close = (rows * rows).sum(-1) < 25 ** 2  # (H, W')
        n = close.sum(1)  # (H,)
        per_row = (rows * close[..., None]).sum(1) / np.maximum(n, 1)[:, None]  # (H, 3)
        offsets[f] = shift + np.where((n > 0.3 * close.shape[1])[:, None], per_row, 0.0)
    return offsets


def _smallest_area(height: int, width: int) -> float:
    """Area of the smallest ShapeWorld object (a small triangle) at this frame size."""
    return AREA_FACTOR["triangle"] * (SIZES["small"] * min(height, width)) ** 2


def _object_masks(scan: _Scan) -> dict[int, np.ndarray]:
    """{palette index: (F, H, W) bool support} for every colour that forms an object.

    Blends where two objects meet can look like a third colour (red against
    yellow passes through orange), but only as a thin seam along the others;
    an object has a solid blob somewhere, away from the other colours.
    """
    F, H, W = scan.labels.shape
    min_blob = 0.2 * _smallest_area(H, W)  # a fifth of the smallest object; a seam or speck is far less
    K = len(COLOUR_NAMES)
    f, k = np.nonzero(scan.labels >= 0)[0], scan.labels[scan.labels >= 0].astype(np.int64)
    counts = np.bincount(f * K + k, minlength=F * K).reshape(F, K)  # pixels per frame and colour
    masks = {}
    for k in np.nonzero(counts.max(0) >= min_blob)[0]:
        mask = scan.labels == k  # (F, H, W)
        lab, n = ndimage.label(mask, structure=_FRAME_CONNECTIVITY)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        keep = sizes >= max(4.0, 0.05 * min_blob)  # drop specks
        keep[0] = False
        masks[int(k)] = _fill_holes(keep[lab])
    solid = {}
    for k, mask in masks.items():
        if counts[:, k].max() >= 4 * min_blob:  # a blob this big is no seam
            solid[k] = mask
            continue
        others = np.zeros_like(mask)
        for j, m in masks.items():
            if j != k:
                others |= m
        seam = _grow2d(others, 2)
        core = ndimage.grey_opening(mask.view(np.uint8), size=(1, 2, 2)).astype(bool) & ~seam
        if core.reshape(F, -1).sum(1).max() >= min_blob:
            solid[k] = mask
    return solid


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes frame by frame: objects are solid, but outline styles
    (neon, sketch) draw only their edges (and hatching) in the object's colour."""
    lab, n = ndimage.label(~mask, structure=_FRAME_CROSS)  # 4-connected gaps: no leaks past diagonals
    outside = np.zeros(n + 1, bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[lab]


def _grow2d(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a (..., H, W) bool mask by `radius` px (a square), frame by frame.
    Shifted ORs, rows then columns: on the small boxes used here this is several
    times faster than scipy's filters, whose per-call overhead dominates."""
    rows = mask.copy()
    for s in range(1, radius + 1):
        rows[..., s:, :] |= mask[..., :-s, :]
        rows[..., :-s, :] |= mask[..., s:, :]
    out = rows.copy()
    for s in range(1, radius + 1):
        out[..., :, s:] |= rows[..., :, :-s]
        out[..., :, :-s] |= rows[..., :, s:]
    return out


# ----------------------------------------------------------------------------
# Per-frame measurements of one object
# ----------------------------------------------------------------------------

@dataclass
class _Measurements:
    """Per-frame raw numbers for one object (internal; `Track` is the public view)."""

    area: np.ndarray  # (T,)
    x: np.ndarray
    y: np.ndarray
    c3: np.ndarray  # normalised |C_3| (1 for a triangle)
    c4: np.ndarray  # normalised |C_4| (1 for a square)
    angle3: np.ndarray  # arg(C_3) / 3, degrees
    angle4: np.ndarray  # arg(C_4) / 4
    edge: np.ndarray  # bool: touches the frame edge
    pole: np.ndarray  # bool: touches the pole
    other: np.ndarray  # bool: touches another object

    @property
    def visible(self) -> np.ndarray:
        return self.area > 0

    @property
    def whole(self) -> np.ndarray:
        return self.visible & ~self.edge & ~self.pole & ~self.other


def _weights(scan: _Scan, k: int, f: int, support: np.ndarray, others: np.ndarray, box) -> np.ndarray:
    """Soft coverage of colour k inside `box`: 1 deep inside the support and in the
    holes it encloses (outline and hatching styles), the unmixed coverage on its
    own pixels near the edge, and the coverage of k over the background on a
    2-px ring around it, so that anti-aliased and blurred edges count as the
    fractions they are."""
    y0, y1, x0, x1 = box
    sp = support[y0:y1, x0:x1]
    zone = _grow2d(sp, 2) & ~others[y0:y1, x0:x1] & ~scan.blocked[None, x0:x1]
    cov = _coverage(scan.x[f, y0:y1, x0:x1], scan.bg[f, y0:y1], k)
    own = scan.labels[f, y0:y1, x0:x1] == k
    inside = ~_grow2d(~sp, 2)  # >= 2 px inside the support: whole pixels, whatever the style's texture
    return np.where(inside | (sp & ~own), 1.0, np.where(own, scan.cover[f, y0:y1, x0:x1], np.where(zone, cov, 0.0)))


def _measure(scan: _Scan, k: int, support: np.ndarray, others: np.ndarray) -> _Measurements:
    T, H, W = support.shape
    nan = lambda: np.full(T, np.nan)  # noqa: E731
    m = _Measurements(np.zeros(T), nan(), nan(), nan(), nan(), nan(), nan(),
                      np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool))
    graze = 2.5 * math.sqrt(scan.scale)  # a cut shorter than this (px) only grazes the shape
    pole_side = _grow2d(scan.blocked[None, :], 1)[0] & ~scan.blocked  # the columns just beside the pole
    for f in range(T):
        s = support[f]
        if not s.any():
            continue
        rows, cols = np.nonzero(s)
        box = (max(rows.min() - 3, 0), min(rows.max() + 4, H), max(cols.min() - 3, 0), min(cols.max() + 4, W))
        y0, y1, x0, x1 = box
        w = _weights(scan, k, f, s, others[f], box)
        area, cx, cy, C3, C4 = _moments(w, y0, x0)
        if area <= 0:
            continue
        m.area[f], m.x[f], m.y[f] = area, cx, cy
        m.c3[f], m.c4[f] = abs(C3) / area ** 2.5 / TRIANGLE_C3, abs(C4) / area ** 3 / SQUARE_C4
        m.angle3[f], m.angle4[f] = math.degrees(np.angle(C3)) / 3, math.degrees(np.angle(C4)) / 4
        # cut = how many support pixels line the frame edge or the pole
        m.edge[f] = max(s[0].sum(), s[-1].sum(), s[:, 0].sum(), s[:, -1].sum()) > graze
        m.pole[f] = s[:, pole_side].sum(0).max(initial=0) > graze
        near_others = others[f, y0:y1, x0:x1]
        m.other[f] = bool(near_others.any() and (_grow2d(s[y0:y1, x0:x1], 2) & near_others).any())
    return m


# ----------------------------------------------------------------------------
# Template fits: objects cut by the pole, the frame edge or another object
# ----------------------------------------------------------------------------

PERIOD = {"circle": 360.0, "square": 90.0, "triangle": 120.0}  # rotational symmetry, degrees


def _template(shape: str, cx, cy, r, angle, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Rendered coverage of a shape at pixel centres (ys, xs), as the renderer draws
    it; parameters may be (G, 1) arrays to render G candidates at once -> (G, N)."""
    theta = np.deg2rad(angle)
    dx, dy = xs - cx, ys - cy
    cos, sin = np.cos(theta), np.sin(theta)
    return np.clip(0.5 - _sdf(shape, cos * dx + sin * dy, -sin * dx + cos * dy, r), 0, 1)


@lru_cache(maxsize=None)
def _moment_angle(shape: str, angle: float) -> float:
    """The moment orientation (arg(C_4) / 4 or arg(C_3) / 3) of a template drawn at
    `angle`, so fitted and measured orientations share one convention."""
    n = 64
    ys, xs = np.mgrid[0:n, 0:n] + 0.5
    w = _template(shape, n / 2, n / 2, n * 0.4, angle, ys, xs)
    _, _, _, C3, C4 = _moments(w, 0, 0)
    return math.degrees(np.angle(C4)) / 4 if shape == "square" else math.degrees(np.angle(C3)) / 3


def _visible_pixels(scan: _Scan, k: int, f: int, support: np.ndarray, others: np.ndarray, pad: int):
    """(ys, xs, w) pixel centres and coverage of colour k around the object in frame f,
    leaving out what cannot be seen (the pole, the other objects): the fit then
    judges a cut object only by the part that shows. A band of `pad` px of
    visible background around it is enough to punish a template that spills."""
    T, H, W = support.shape
    rows, cols = np.nonzero(support[f])
    if rows.size == 0:  # generated clips can have frames where the object's colour vanishes
        return np.zeros(0), np.zeros(0), np.zeros(0)
    box = (max(rows.min() - pad, 0), min(rows.max() + pad + 1, H), max(cols.min() - pad, 0),
           min(cols.max() + pad + 1, W))
    y0, y1, x0, x1 = box
    w = _weights(scan, k, f, support[f], others[f], box)
    hidden = _grow2d(others[f, y0:y1, x0:x1], 1) | scan.blocked[None, x0:x1]
    vy, vx = np.nonzero(~hidden)
    return vy + y0 + 0.5, vx + x0 + 0.5, w[vy, vx].astype(np.float64)


def _losses(shape: str, poses: np.ndarray, ys, xs, w) -> np.ndarray:
    """(G,) squared error of G candidate poses (G, 4) against the coverage w."""
    g = poses[:, :, None]  # (G, 4, 1)
    return ((_template(shape, g[:, 0], g[:, 1], g[:, 2], g[:, 3], ys, xs) - w) ** 2).sum(1)


def _fit(shape: str, ys, xs, w, grid: np.ndarray, free_radius: bool, starts: int = 1,
         iterations: int = 24) -> tuple[float, np.ndarray]:
    """Least-squares template fit: the best `starts` poses of a coarse (G, 4) grid of
    (cx, cy, r, angle), each refined by a compass search (every +-step move of
    every free parameter evaluated at once, steps halved when none helps).
    Returns (loss, params)."""
    losses = _losses(shape, grid, ys, xs, w)
    free = [0, 1] + ([2] if free_radius else []) + ([3] if shape != "circle" else [])
    step0 = np.array([0.25, 0.25, 0.12, 0.0]) * float(np.median(grid[:, 2]))
    step0[3] = 0.25 * PERIOD[shape] / 6
    moves = np.zeros((2 * len(free), 4))
    for j, i in enumerate(free):
        moves[2 * j, i], moves[2 * j + 1, i] = 1.0, -1.0
    best_loss, best = float(losses.min()), grid[int(losses.argmin())]
    for i in np.argsort(losses)[:starts]:
        p, value, step = grid[i].copy(), float(losses[i]), step0.copy()
        for _ in range(iterations):
            candidates = p + moves * step  # (2 * free, 4)
            trial = _losses(shape, candidates, ys, xs, w)
            j = int(trial.argmin())
            if trial[j] < value - 1e-6:
                p, value = candidates[j], float(trial[j])
            else:
                step = step * 0.5
                if step[0] < 0.05:
                    break
        if value < best_loss:
            best_loss, best = value, p
    return best_loss, best


def _pose_grid(shape: str, cx: float, cy: float, radii, offsets=(-0.5, 0.0, 0.5)) -> np.ndarray:
    """(G, 4) starting poses around a centroid: the visible part's centroid can be
    off the true centre by up to half a radius when a side is cut."""
    angles = [0.0] if shape == "circle" else list(np.arange(6) * PERIOD[shape] / 6)
    return np.array([(cx + ox * r, cy + oy * r, r, a) for r in radii for a in angles
                     for ox in offsets for oy in offsets])


def _shape_from_templates(scan: _Scan, k: int, m: "_Measurements", support, others) -> tuple[str, float]:
    """(shape, radius) for an object never seen whole: fit every shape to its most
    visible frames until one shape clearly wins."""
    S = min(support.shape[1:])
    total = {s: 0.0 for s in SHAPES}
    radii: dict = {s: [] for s in SHAPES}
    # three of the most visible frames, spread in time (a spinning object shows several sides)
    candidates = np.nonzero(m.area >= 0.8 * m.area.max())[0]
    frames = candidates[np.unique(np.linspace(0, len(candidates) - 1, 3).round().astype(int))]
    for n, f in enumerate(frames):
        ys, xs, w = _visible_pixels(scan, k, int(f), support, others, int(math.ceil(3 * scan.scale)))
        for shape in SHAPES:
            grid = _pose_grid(shape, m.x[f], m.y[f], S * np.array([0.12, 0.17, 0.22]), (-0.5, -0.25, 0, 0.25, 0.5))
            value, p = _fit(shape, ys, xs, w, grid, free_radius=True, starts=2)
            total[shape] += value
            radii[shape].append(p[2])
        first, second = sorted(total.values())[:2]
        if n >= 1 and first < 0.5 * second:
            break
    shape = min(total, key=total.get)
    return shape, float(np.median(radii[shape]))


def _refine_cut_frames(scan: _Scan, k: int, m: "_Measurements", support, others, shape: str, radius: float,
                       ref_area: float, angle: np.ndarray) -> np.ndarray:
    """Replace the visible-part centroid by a template fit's centre (and angle) on
    frames where the object is cut but at least 30% shows; returns which frames
    were refined. A cut biases the centroid by up to half a radius, which would
    read as motion (an object sliding behind the pole seems to slow down)."""
    refined = np.zeros(len(m.area), bool)
    # a cut that hides < 5% moves the centroid by < 0.05 r: keep the centroid there
    mild = m.visible & ~m.whole & (m.area >= 0.95 * ref_area)
    cut = m.visible & ~m.whole & ~mild & (m.area >= 0.3 * ref_area)
    frames = np.nonzero(cut)[0]
    if len(frames) > MAX_REFINED:  # enough to follow the motion; the rest stay unused
        frames = frames[np.unique(np.linspace(0, len(frames) - 1, MAX_REFINED).round().astype(int))]
    pad = int(math.ceil(3 * scan.scale))
    offset = _moment_angle(shape, 0.0) if shape != "circle" else 0.0
    sign = 1.0
    if shape != "circle":  # does the moment angle turn with or against the template angle?
        d = (_moment_angle(shape, 5.0) - offset + PERIOD[shape] / 2) % PERIOD[shape] - PERIOD[shape] / 2
        sign = 1.0 if d > 0 else -1.0
    previous = None  # (frame, params): consecutive frames start from the last fit
    for f in frames:
        ys, xs, w = _visible_pixels(scan, k, int(f), support, others, pad)
        grid = _pose_grid(shape, m.x[f], m.y[f], [radius])
        if previous is not None and f - previous[0] <= 2:
            p = previous[1]
            warm = [(p[0] + dx, p[1] + dy, radius, p[3] + da) for dx in (-1.5, 0, 1.5) for dy in (-1.5, 0, 1.5)
                    for da in ((0.0,) if shape == "circle" else (-15.0, 0.0, 15.0))]
            grid = np.vstack([grid, np.array(warm)])
        _, p = _fit(shape, ys, xs, w, grid, free_radius=False)
        previous = (f, p)
        m.x[f], m.y[f] = p[0], p[1]
        if shape != "circle":
            angle[f] = offset + sign * p[3]
        refined[f] = True
    return refined | mild


# ----------------------------------------------------------------------------
# One object: shape, size, motion, physics
# ----------------------------------------------------------------------------

def _spin_rate(angle: np.ndarray, ok: np.ndarray, shape: str) -> tuple[float, float]:
    """(signed degrees/frame, strength) of the orientation turning.

    Orientation is known modulo the shape's symmetry (90 degrees for a square,
    120 for a triangle), so only differences between nearby frames are used.
    Stop-motion holds each pose for two frames, hence lag 2 as well.
    """
    period = PERIOD[shape]
    rates, signed = [], []
    for lag in (1, 2):
        pair = ok[:-lag] & ok[lag:]
        if not pair.any():
            continue
        d = (angle[lag:] - angle[:-lag])[pair]
        d = (d + period / 2) % period - period / 2  # wrapped to [-period/2, period/2)
        rates.append(float(np.median(np.abs(d))) / lag)
        if lag == 1:
            signed.append(float(np.mean(d)))
    if not rates:
        return 0.0, 0.0
    return (signed[0] if signed else max(rates)), max(rates)


def _describe(scan: _Scan, k: int, support: np.ndarray, others: np.ndarray, offset: int) -> ObjectAnalysis:
    T, H, W = support.shape
    m = _measure(scan, k, support, others)
    whole = m.whole
    if whole.any():  # moments on whole frames: exact, blur-invariant, cheap
        c3, c4 = float(np.median(m.c3[whole])), float(np.median(m.c4[whole]))
        shape = classify_shape(c3, c4)
        ref_area = float(np.median(m.area[whole]))
        radius = math.sqrt(ref_area / AREA_FACTOR[shape])
    else:  # never seen whole: fit templates to what shows
        shape, radius = _shape_from_templates(scan, k, m, support, others)
        ref_area = AREA_FACTOR[shape] * radius ** 2
        best = int(np.argmax(m.area))
        c3, c4 = float(m.c3[best]), float(m.c4[best])
    size = classify_size(radius, H, W)
    angle = {"square": m.angle4, "triangle": m.angle3}.get(shape, np.full(T, np.nan)).copy()
    refined = _refine_cut_frames(scan, k, m, support, others, shape, radius, ref_area, angle)
    track = Track(np.arange(T) + offset, m.x, m.y, m.area, m.visible, whole, m.edge, m.pole, m.other, angle,
                  [COLOUR_NAMES[k] if v else None for v in m.visible])

    # follow the centre on frames where it is known well: whole, or cut and template-fitted
    usable = whole | refined
    if usable.sum() < 2:
        usable = m.visible
    usable &= ~_held_repeats(m.x, m.y, usable)
    t = track.frames[usable].astype(np.float64)
    px, py = m.x[usable], m.y[usable]
    vx, _, _ = _line(t, px)
    vy, _, _ = _line(t, py)
    jitter = _jitter(px, py)
    bounce = fit_bounce(t, py, H, BOTTOM_EXTENT[shape] * radius, scan.scale, jitter) if len(t) >= 4 else None
    omega, spin = _spin_rate(angle, usable & np.isfinite(angle), shape) if shape != "circle" else (0.0, 0.0)
    motion = _classify_motion(t, px, py, bounce, spin, jitter, scan.scale)
    return ObjectAnalysis(COLOUR_NAMES[k], shape, size, motion, track, [COLOUR_NAMES[k]], radius, (vx, vy), omega,
                          {"c3": c3, "c4": c4}, bounce)


def _held_repeats(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(T,) bool: frames that only repeat the previous pose (stop-motion holds each
    pose for two frames). Detected when steps into odd frames are ~0 while steps
    into even frames are not (or the other way round)."""
    repeats = np.zeros(len(x), bool)
    pair = ok[1:] & ok[:-1]
    step = np.hypot(np.diff(x), np.diff(y))  # step[i]: frame i -> i + 1
    into_odd, into_even = step[0::2][pair[0::2]], step[1::2][pair[1::2]]
    if len(into_odd) < 2 or len(into_even) < 2:
        return repeats
    a, b = float(np.median(into_odd)), float(np.median(into_even))
    if max(a, b) >= 0.5 and min(a, b) < 0.2 * max(a, b):
        repeats[slice(1, None, 2) if a < b else slice(2, None, 2)] = True
    return repeats


def _jitter(px: np.ndarray, py: np.ndarray) -> float:
    """Robust noise level of a track, px: the spread of its second differences,
    which vanish on lines and are constant on parabolas. Also taken at lag 2,
    on which stop-motion's held poses (steps 0, 2v, 0, 2v) are smooth again."""
    levels = []
    for lag in (1, 2):
        if len(px) >= 2 * lag + 3:
            spread = []
            for v in (px, py):  # per axis: gravity makes y's second differences constant, not zero
                d2 = v[2 * lag:] - 2 * v[lag:-lag] + v[:-2 * lag]
                spread.append(float(np.median(np.abs(d2 - np.median(d2)))) * 1.4826 / math.sqrt(6))
            levels.append(math.hypot(*spread) / math.sqrt(2))
    return min(levels, default=0.0)


def _classify_motion(t, px, py, bounce: Optional[BounceFit], spin: float, jitter: float, scale: float) -> str:
    """still / spin / left / right / up / down / bounce from a centre track.

    Order matters: first "does it travel at all" (line fits, judged against
    their own standard error so stop-motion jitter does not count as motion),
    then "does it fall" (a gravity fit explains far more than a line), then the
    dominant direction of the line fit.
    """
    if len(t) < 2:
        return "still"
    vx, _, rx = _line(t, px)
    vy, _, ry = _line(t, py)
    spread = math.sqrt(max(float(((t - t.mean()) ** 2).sum()), 1e-9))
    slope_error = max(math.hypot(rx, ry), 0.05 * scale) / spread  # px / frame
    speed = math.hypot(vx, vy)
    moving = speed * (t[-1] - t[0]) >= 1.2 * scale and speed >= 5.0 * slope_error
    falls = (bounce is not None and bounce.gravity_64 >= 0.08 and float(np.ptp(py)) >= 1.2 * scale
             and ry > 2.0 * bounce.residual + 0.05 * scale + 2.0 * jitter)
    if not (moving or falls):
        return "spin" if spin >= 3.0 else "still"
    if falls:
        return "bounce"
    if abs(vx) >= abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


def _link_colour_changes(objects: list[ObjectAnalysis], scale: float) -> list[ObjectAnalysis]:
    """A storyboard colour change (or a generator's mistake) ends one colour's track
    where another's begins, at the same place: join them into one object whose
    `colours` lists both."""
    objects = sorted(objects, key=lambda o: int(np.argmax(o.track.visible)))
    joined: list[ObjectAnalysis] = []
    for obj in objects:
        first = int(np.argmax(obj.track.visible))
        host = None
        for prev in joined:
            last = int(np.nonzero(prev.track.visible)[0][-1])
            gap = math.hypot(prev.track.x[last] - obj.track.x[first], prev.track.y[last] - obj.track.y[first])
            if first - 2 <= last < first and gap < max(prev.radius, 4 * scale):
                host = prev
                break
        if host is None:
            joined.append(obj)
            continue
        tr, new = host.track, obj.track
        after = new.visible
        for name in ("x", "y", "area", "angle"):
            getattr(tr, name)[after] = getattr(new, name)[after]
        for name in ("visible", "whole", "at_edge", "at_pole", "at_other"):
            setattr(tr, name, getattr(tr, name) | getattr(new, name))
        tr.colour = [c if c is not None else d for c, d in zip(tr.colour, new.colour)]
        host.colours = host.colours + [c for c in obj.colours if c not in host.colours]
        named = [c for c in tr.colour if c is not None]
        host.colour = max(host.colours, key=named.count)
    return joined


# ----------------------------------------------------------------------------
# Permanence
# ----------------------------------------------------------------------------

def _permanence(obj: ObjectAnalysis, pole: Optional[tuple[float, float]], height: int, width: int) -> Permanence:
    """An object must go on being seen, with the same colour, until it leaves the
    frame or the clip ends. It may be hidden for a while (behind the pole or the
    other object) as long as it comes back; one last seen fewer than 3 frames
    before the end is not judged (too little evidence that it is gone).

    pole: (centre x, width) or None.
    """
    tr = obj.track
    T = len(tr.frames)
    r = obj.radius
    vis = np.nonzero(tr.visible)[0]
    reach = (pole[1] / 2 + r + 1) if pole else 0.0
    behind = tr.visible & (tr.at_pole | (np.abs(tr.x - pole[0]) < reach if pole else False))
    occluded = bool(behind.any())
    crossed = False
    if pole and occluded:
        side = np.sign(tr.x[vis] - pole[0])
        crossed = bool(side[0] != side[-1] and side[0] != 0 and side[-1] != 0)
    last = vis[-1]
    if T - 1 - last >= 3:  # gone before the end: did it leave, hide, or vanish?
        nx, ny = tr.x[last] + obj.velocity[0], tr.y[last] + obj.velocity[1]
        # leaving: already sliding out through an edge (cut and shrinking), or headed out
        sliding_out = tr.at_edge[last] and tr.area[last] < 0.85 * tr.area[vis].max()
        headed_out = not (0 <= nx <= width and 0 <= ny <= height)
        leaving = sliding_out or headed_out
        at_pole = pole is not None and (tr.at_pole[last] or abs(nx - pole[0]) < reach)
        when = int(tr.frames[last]) + 1
        if at_pole and not leaving:
            return Permanence(True, crossed, False, f"vanished behind the pole at frame {when} and never came out")
        if not leaving and not tr.at_other[last]:
            return Permanence(occluded, crossed, False, f"vanished in plain view at frame {when}")
    changes = [f for f in range(1, T) if tr.colour[f] is not None and tr.colour[f - 1] is not None
               and tr.colour[f] != tr.colour[f - 1]]
    if pole and any(behind[f] or behind[f - 1] for f in changes):
        return Permanence(True, crossed, False, f"changed colour behind the pole ({' -> '.join(obj.colours)})")
    if not occluded:
        return Permanence(False, False, None, "never went behind the pole" if pole else "no occluder")
    return Permanence(True, crossed, True, "came out the other side" if crossed else "stayed in view beside the pole")


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------

def analyze(frames: np.ndarray, frame_range: Optional[tuple[int, int]] = None) -> VideoAnalysis:
    """Analyse a clip (F, H, W, 3) uint8 or float in [0, 1], or one (H, W, 3) image.

    frame_range=(start, end) analyses frames start..end-1 only (a storyboard
    segment); the background and the pole, which are static, are still
    estimated from the whole clip.
    """
    x = _as_frames(frames)
    F, H, W, _ = x.shape
    start, end = _check_range(frame_range, F)
    background, bg = _estimate_background(x)
    pole = _find_pole(x, bg)
    cover = np.zeros(W, np.float32)
    if pole is not None:  # re-estimate the background without the pole's columns
        background, bg = _estimate_background(x, keep_columns=~_grow(pole[:2], W, 3))
        cover = pole[2]
    x = x[start:end]
    blocked = cover > 0.5
    partial = (cover > 0.02) & ~blocked
    if partial.any():  # p = c * pole + (1 - c) * scene behind it: recover the scene on the pole's edges
        grey = np.median(x[:, ::2, pole[0]:pole[1] + 1].reshape(len(x), -1, 3), axis=1)  # (F, 3) as drawn
        c = cover[partial][None, None, :, None]
        x[:, :, partial] = (x[:, :, partial] - c * grey[:, None, None, :]) / (1 - c)
    scan = _scan(x, bg, blocked)
    masks = _object_masks(scan)
    analysis = VideoAnalysis(background, H, W, (start, end))
    if pole is not None:
        analysis.occluder_x = (pole[0] + pole[1] + 1) / 2
        analysis.occluder_width = float(pole[1] - pole[0] + 1)
    everything = np.zeros(scan.labels.shape, bool)
    for m in masks.values():
        everything |= m
    objects = [_describe(scan, k, support, everything & ~support, start) for k, support in masks.items()]
    objects = [o for o in objects if o.track.visible.any()]  # a colour speck in a noisy generated clip is not an object
    objects = _link_colour_changes(objects, scan.scale)
    if end - start > 1:
        pole_xw = None if pole is None else (analysis.occluder_x, analysis.occluder_width)
        for obj in objects:
            obj.permanence = _permanence(obj, pole_xw, H, W)
    analysis.objects = sorted(objects, key=lambda o: -o.track.area.sum())
    return analysis


def analyze_segments(frames: np.ndarray, frame_ranges: Sequence[tuple[int, int]]) -> list[VideoAnalysis]:
    """One analysis per storyboard segment."""
    return [analyze(frames, r) for r in frame_ranges]


def dominant_object(analysis: VideoAnalysis) -> Optional[ObjectAnalysis]:
    """The object that fills the most pixel-frames (None on an empty clip)."""
    return max(analysis.objects, key=lambda o: o.track.area.sum(), default=None)


def find_objects(analysis: VideoAnalysis, colour: Optional[str] = None, shape: Optional[str] = None,
                 motion: Optional[str] = None, size: Optional[str] = None) -> list[ObjectAnalysis]:
    """The objects that have every given attribute (None: any)."""
    for name, value, allowed in (("colour", colour, COLOUR_NAMES), ("shape", shape, SHAPES),
                                 ("motion", motion, MOTIONS), ("size", size, tuple(SIZES))):
        if value is not None and value not in allowed:
            raise ValueError(f"{name}={value!r} is not allowed; choose one of {sorted(allowed)} or None")
    return [o for o in analysis.objects
            if (colour is None or colour in o.colours) and (shape is None or o.shape == shape)
            and (motion is None or o.motion == motion) and (size is None or o.size == size)]


def matches(analysis: VideoAnalysis, colour: Optional[str] = None, shape: Optional[str] = None,
            motion: Optional[str] = None, size: Optional[str] = None, background: Optional[str] = None) -> bool:
    """Prompt adherence: does some object have every given attribute (and the background match)?
    An object whose colour changes mid-clip matches each of its colours; analyse a
    storyboard segment (frame_range) to check one segment's prompt."""
    if background is not None and background not in BACKGROUNDS:
        raise ValueError(f"background={background!r} is not allowed; choose one of {sorted(BACKGROUNDS)} or None")
    if background is not None and analysis.background != background:
        return False
    return bool(find_objects(analysis, colour, shape, motion, size))
