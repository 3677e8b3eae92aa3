"""ShapeWorld: the project's procedural, captioned video world (shared/shapeworld.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import Captions, SegmentCaption, caption
from .render import RenderedClip, render
from .world import (ASPECT_RATIOS, BACKGROUNDS, COLOURS, COUNTERFACTUAL_ATTRIBUTES, DURATIONS, EVAL_SEED_START, FPS,
                    HELD_OUT, MOTIONS, PALETTE, SHAPE_WORDS, SHAPES, SIZES, SPLITS, STYLE_TRIGGERS, STYLES, MotionSpec,
                    ObjectTrack, Scene, SceneObject, check_choice, check_frame_size, check_num_frames, counterfactual,
                    sample_scene, simulate)


@dataclass
class Clip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    scene: Scene
    captions: Captions
    tracks: list[ObjectTrack]  # ground truth per object, per frame, as drawn


def render_scene(scene: Scene) -> Clip:
    drawn = render(scene)
    return Clip(drawn.frames, scene, caption(scene), drawn.tracks)


def render_clip(seed: int, split: str = "train", **scene_kwargs) -> Clip:
    """Sample the scene for `seed` (see `sample_scene` for the keyword arguments) and render it."""
    return render_scene(sample_scene(seed, split, **scene_kwargs))


__all__ = [
    "ASPECT_RATIOS", "BACKGROUNDS", "COLOURS", "COUNTERFACTUAL_ATTRIBUTES", "DURATIONS", "EVAL_SEED_START", "FPS",
    "HELD_OUT", "MOTIONS", "PALETTE", "SHAPE_WORDS", "SHAPES", "SIZES", "SPLITS", "STYLE_TRIGGERS", "STYLES",
    "Captions", "Clip", "MotionSpec", "ObjectTrack", "RenderedClip", "Scene", "SceneObject", "SegmentCaption",
    "caption", "check_choice", "check_frame_size", "check_num_frames", "counterfactual", "render", "render_clip",
    "render_scene", "sample_scene", "simulate",
]
