"""Rasterise ShapeWorld scenes: analytic anti-aliasing, shading, occluder, styles.

Every shape is a signed distance field evaluated at pixel centres; coverage is
`clip(0.5 - sdf, 0, 1)`, which anti-aliases edges exactly for straight edges
and to within a few percent on curves, at no supersampling cost. The whole clip
is drawn in one vectorised pass per object: arrays are (F, H, W).

Style choices the spec leaves open, written down here:
- neon: the black background, each object a 1.5 px line in its colour with an
  exponential glow; the occluder stays a solid pole so it still hides things.
- sketch: the paper background, each object a coloured-pencil outline
  with diagonal hatching in its colour; `white` objects are not sampled in
  sketch (white on paper is invisible, as white on sky).
- pixel: 8x8-pixel blocks, each sampled at its centre and snapped to the
  nearest of the scene's own object/background colours (a block mean, or the
  whole palette, would invent colours that are not in the scene).
- stop-motion: each pose held for two frames, each held pose shifted by up to
  1 px (at 64 px) of jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .world import (BACKGROUNDS, OCCLUDER_RGB, OCCLUDER_WIDTH_FRACTION, PALETTE, ObjectTrack, Scene,
                    simulate)

PIXEL_BLOCK = 8
SHADING = 0.12  # highlight amplitude: lightness stays within +-15% of the palette colour


@dataclass
class RenderedClip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    tracks: list[ObjectTrack]  # what was drawn (after stop-motion holds and jitter)


def render(scene: Scene) -> RenderedClip:
    tracks = simulate(scene)
    if scene.style == "stop-motion":
        tracks = [_hold_and_jitter(t, scene) for t in tracks]

    F, H, W = scene.num_frames, scene.height, scene.width
    canvas = np.broadcast_to(_background(scene), (F, H, W, 3)).copy()  # (F, H, W, 3) float32
    ys = np.arange(H, dtype=np.float32)[None, :, None] + 0.5  # (1, H, 1) pixel centres
    xs = np.arange(W, dtype=np.float32)[None, None, :] + 0.5  # (1, 1, W)
    for obj, track in zip(scene.objects, tracks):
        r = scene.radius(obj)
        # object-local coordinates, rotated into the object's frame
        dx = xs - track.x.astype(np.float32)[:, None, None]  # (F, H, W)
        dy = ys - track.y.astype(np.float32)[:, None, None]
        theta = np.deg2rad(track.angle).astype(np.float32)[:, None, None]
        cos, sin = np.cos(theta), np.sin(theta)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        sdf = _sdf(obj.shape, u, v, r)
        colour = np.array([PALETTE[c] for c in track.colour], dtype=np.float32)[:, None, None, :]  # (F,1,1,3)
        _draw(canvas, scene.style, sdf, colour, dx, dy, r)

    if scene.occluder_x is not None:
        half = OCCLUDER_WIDTH_FRACTION * W / 2
        left, right = scene.occluder_x - half, scene.occluder_x + half
        cover = np.clip(np.minimum(xs[0] + 0.5 - left, right - (xs[0] - 0.5)), 0, 1)[..., None]  # (1, W, 1)
        canvas = canvas * (1 - cover) + np.array(OCCLUDER_RGB, np.float32) * cover

    if scene.style == "pixel":
        canvas = _pixelate(canvas, scene)
    frames = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return RenderedClip(frames, tracks)


def _sdf(shape: str, u, v, r: float):
    """Signed distance (pixels, negative inside) of a shape with circumradius r."""
    if shape == "circle":
        return np.sqrt(u * u + v * v) - r
    if shape == "square":
        a = r / math.sqrt(2)  # half side
        qx, qy = np.abs(u) - a, np.abs(v) - a
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0)
    # equilateral triangle, apex up (-v), inradius r/2: the max over its three edge
    # half-planes (exact inside and along edges, slightly rounded past corners)
    s3 = math.sqrt(3) / 2
    return np.maximum(np.maximum(v, s3 * u - 0.5 * v), -s3 * u - 0.5 * v) - r / 2


def _draw(canvas, style: str, sdf, colour, dx, dy, r: float) -> None:
    if style == "neon":
        line = np.clip(1.25 - np.abs(sdf), 0, 1)
        glow = 0.55 * np.exp(-np.maximum(np.abs(sdf) - 0.75, 0) / 1.8)
        alpha = np.maximum(line, glow)[..., None]
        canvas[:] = canvas * (1 - alpha) + colour * alpha
        return
    if style == "sketch":
        outline = np.clip(1.1 - np.abs(sdf + 0.6), 0, 1)
        hatch = (np.sin((dx + dy) * 1.6) > 0.1) * np.clip(0.5 - sdf, 0, 1) * 0.55
        alpha = np.maximum(outline, hatch)[..., None]
        canvas[:] = canvas * (1 - alpha) + colour * alpha
        return
    # soft highlight from the upper left, at most +-SHADING of the palette colour
    shade = 1 + SHADING * np.clip(-(0.6 * dx + 0.8 * dy) / r, -1, 1)
    alpha = np.clip(0.5 - sdf, 0, 1)[..., None]
    canvas[:] = canvas * (1 - alpha) + np.minimum(colour * shade[..., None], 255) * alpha


def _background(scene: Scene) -> np.ndarray:
    """(H, W, 3) float32."""
    top, bottom = BACKGROUNDS[scene.background]
    t = (np.arange(scene.height, dtype=np.float32) + 0.5) / scene.height  # (H,)
    column = (1 - t)[:, None] * np.array(top, np.float32) + t[:, None] * np.array(bottom, np.float32)  # (H, 3)
    return np.broadcast_to(column[:, None, :], (scene.height, scene.width, 3))


def _pixelate(canvas: np.ndarray, scene: Scene) -> np.ndarray:
    """Sample each block at its centre (crisp edges, no blended colours) and snap it to the
    colours this scene really has, so an anti-aliased edge never turns into another palette colour."""
    b = PIXEL_BLOCK
    blocks = canvas[:, b // 2::b, b // 2::b]  # (F, H/b, W/b, 3)
    top, bottom = BACKGROUNDS[scene.background]
    levels = [tuple((np.array(top) * (1 - t) + np.array(bottom) * t).round()) for t in (0.0, 0.5, 1.0)]
    objects = {PALETTE[c] for o in scene.objects for c in o.colours}
    choices = np.array(sorted(objects) + levels + [OCCLUDER_RGB], np.float32)  # (K, 3)
    nearest = ((blocks[..., None, :] - choices) ** 2).sum(-1).argmin(-1)  # (F, H/b, W/b)
    return choices[nearest].repeat(b, axis=1).repeat(b, axis=2)  # (F, H, W, 3)


def _hold_and_jitter(track: ObjectTrack, scene: Scene) -> ObjectTrack:
    F = len(track.x)
    held = (np.arange(F) // 2) * 2  # frame shown at each frame
    rng = np.random.default_rng([scene.seed or 0, 7])
    jitter = rng.uniform(-1, 1, size=((F + 1) // 2, 2)) * scene.speed_scale  # one per held pose
    return ObjectTrack(
        x=track.x[held] + jitter[np.arange(F) // 2, 0],
        y=track.y[held] + jitter[np.arange(F) // 2, 1],
        angle=track.angle[held],
        colour=[track.colour[i] for i in held],
        bounces=[f for f in track.bounces if f % 2 == 0],
    )
