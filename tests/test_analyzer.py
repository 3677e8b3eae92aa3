"""The ShapeWorld analyzer reads rendered clips back: attributes, physics, permanence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from sora_hf.eval import analyze, analyze_segments, dominant_object, find_objects, fit_bounce, matches
from sora_hf.shapeworld import (EVAL_SEED_START, STYLES, MotionSpec, Scene, SceneObject, render_scene,
                                sample_scene)
from sora_hf.shapeworld.render import render


def scene(objects, height=64, width=64, num_frames=17, background="sand", occluder_x=None, segment_starts=(0,),
          style="none"):
    return Scene(height, width, num_frames, background, objects, occluder_x, style, list(segment_starts), 0, "eval")


def obj(shape="circle", colour="red", motion="still", x=32.0, y=32.0, size="medium", angle=0.0, **spec):
    return SceneObject(shape, size, x, y, angle, [colour], [MotionSpec(motion, **spec)])


def blur_and_noise(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    x = ndimage.gaussian_filter(frames.astype(np.float32) / 255, sigma=(0, 1, 1, 0))
    return np.clip(x + np.random.default_rng(seed).normal(0, 8 / 255, x.shape), 0, 1).astype(np.float32)


def only(analysis):
    assert len(analysis.objects) == 1, [(o.colour, o.shape) for o in analysis.objects]
    return analysis.objects[0]


# ----------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------

def test_red_ball_moving_right():
    clip = render_scene(scene([obj("circle", "red", "right", x=14, speed=2.0)], background="sky"))
    a = analyze(clip.frames)
    o = only(a)
    assert (a.background, o.colour, o.shape, o.motion, o.size) == ("sky", "red", "circle", "right", "medium")
    assert o.velocity[0] == pytest.approx(2.0, abs=0.1)
    np.testing.assert_allclose(o.track.x, clip.tracks[0].x, atol=0.3)  # the track follows the ball
    assert matches(a, colour="red", shape="circle", motion="right")
    assert not matches(a, colour="blue") and not matches(a, motion="left") and not matches(a, background="gray")


@pytest.mark.parametrize("shape", ["square", "triangle"])
def test_spinning_shape_is_spin_and_a_resting_one_is_still(shape):
    spinning = only(analyze(render_scene(scene([obj(shape, "yellow", "spin", angle=10, speed=15.0)],
                                               background="black")).frames))
    assert (spinning.colour, spinning.shape, spinning.motion) == ("yellow", shape, "spin")
    assert abs(spinning.angular_speed) == pytest.approx(15.0, abs=2.0)
    resting = only(analyze(render_scene(scene([obj(shape, "white", "still", angle=33)], background="gray")).frames))
    assert (resting.colour, resting.shape, resting.motion) == ("white", shape, "still")


@pytest.mark.parametrize("motion", ["left", "up", "down"])
def test_straight_motions(motion):
    start = {"left": (50, 32), "up": (32, 50), "down": (32, 14)}[motion]
    o = only(analyze(render_scene(scene([obj("square", "blue", motion, *start, size="small", speed=1.5)])).frames))
    assert (o.colour, o.shape, o.size, o.motion) == ("blue", "square", "small", motion)


def test_two_objects_sizes_and_helpers():
    clip = render_scene(scene([obj("triangle", "green", "still", x=20, y=20, size="large"),
                               obj("circle", "pink", "down", x=50, y=12, size="small", speed=2.5)],
                              height=112, width=64))
    a = analyze(clip.frames)
    assert {(o.colour, o.shape, o.size, o.motion) for o in a.objects} == {
        ("green", "triangle", "large", "still"), ("pink", "circle", "small", "down")}
    assert dominant_object(a).colour == "green"
    assert [o.colour for o in find_objects(a, shape="circle")] == ["pink"]
    assert matches(a, colour="pink", motion="down") and not matches(a, colour="pink", motion="still")


def test_image_and_large_tier():
    clip = render_scene(scene([obj("square", "orange", "still", x=100, y=60, size="large", angle=20)],
                              height=128, width=224, num_frames=1, background="gray"))
    for frames in (clip.frames, clip.frames[0]):  # (1, H, W, 3) or a bare (H, W, 3) image
        o = only(analyze(frames))
        assert (o.colour, o.shape, o.size, o.motion) == ("orange", "square", "large", "still")
        assert o.permanence is None and o.bounce is None


def test_storyboard_segments():
    s = scene([SceneObject("circle", "medium", 14, 32, 0, ["red", "blue"],
                           [MotionSpec("right", speed=2.0), MotionSpec("right", speed=2.0)])],
              num_frames=17, segment_starts=(0, 9), width=112)
    clip = render_scene(s)
    first, second = analyze_segments(clip.frames, s.segment_ranges())
    assert (only(first).colour, only(first).motion, first.frame_range) == ("red", "right", (0, 9))
    assert (only(second).colour, only(second).motion) == ("blue", "right")
    whole = only(analyze(clip.frames))  # the colour change is one object whose colours are both
    assert whole.colours == ["red", "blue"] and whole.permanence.holds is None


# ----------------------------------------------------------------------------
# Physics
# ----------------------------------------------------------------------------

def test_bouncing_ball_is_physical_and_a_steady_one_is_not():
    bouncing = only(analyze(render_scene(scene([obj("circle", "red", "bounce", y=12, restitution=0.8)],
                                               num_frames=33)).frames))
    assert bouncing.motion == "bounce"
    assert bouncing.bounce.physical, bouncing.bounce.reason
    assert bouncing.bounce.gravity_64 == pytest.approx(0.25, abs=0.03)
    assert len(bouncing.bounce.contacts) >= 1
    assert all(0.6 < e < 1.0 for e in bouncing.bounce.restitution)
    steady = only(analyze(render_scene(scene([obj("circle", "red", "down", y=12, speed=1.5)], num_frames=33)).frames))
    assert steady.motion == "down"
    assert not steady.bounce.physical


def test_fit_bounce_on_synthetic_tracks():
    t = np.arange(40.0)
    y, v, ys = 10.0, 0.0, []
    for _ in t:  # the simulator's integrator: floor at 60, restitution 0.8
        ys.append(y)
        v += 0.25
        y += v
        if y > 60:
            y, v = 60 - (y - 60) * 0.8, -abs(v) * 0.8
    fit = fit_bounce(t, np.array(ys), height=64, bottom_extent=4)
    assert fit.physical and fit.restitution and all(0.7 < e < 0.9 for e in fit.restitution)
    assert not fit_bounce(t, 10 + 1.5 * t).physical  # constant velocity: no gravity
    rising = np.array(ys)
    rising[20:] += 8 * np.arange(20)  # gains height after the bounce
    assert not fit_bounce(t, rising).physical


# ----------------------------------------------------------------------------
# Permanence
# ----------------------------------------------------------------------------

def pole_scene(**kw):
    return scene([obj("square", "purple", "right", x=12, y=30, speed=2.0)], width=112, num_frames=33,
                 background="gray", occluder_x=50.0, **kw)


def test_permanence_holds_behind_the_pole():
    a = analyze(render_scene(pole_scene()).frames)
    assert a.occluder_x == pytest.approx(50.0, abs=1.0)
    o = only(a)
    assert (o.colour, o.shape, o.motion) == ("purple", "square", "right")
    assert o.permanence.occluded and o.permanence.crossed and o.permanence.holds, o.permanence


def vanish_after(s: Scene, frame: int) -> np.ndarray:
    """Paint the object out of every frame from `frame` on (it goes behind the pole and never comes out)."""
    frames = render(s).frames
    empty = render(Scene(s.height, s.width, s.num_frames, s.background,
                         [obj("circle", "red", "still", x=-1e4, y=-1e4)], s.occluder_x, s.style)).frames
    frames[frame:] = empty[frame:]
    return frames


def test_vanishing_behind_the_pole_is_flagged():
    s = pole_scene()
    first_touch = int(np.argmax(np.abs(render_scene(s).tracks[0].x - 50.0) < 5.6 + 10.9 / 2))
    for frames in (vanish_after(s, first_touch + 1), blur_and_noise(vanish_after(s, first_touch + 1))):
        o = only(analyze(frames))
        assert o.permanence.holds is False and "pole" in o.permanence.reason, o.permanence


def test_colour_change_behind_the_pole_is_flagged_and_vanishing_in_view_too():
    s = pole_scene()
    recoloured = Scene(s.height, s.width, s.num_frames, s.background,
                       [obj("square", "yellow", "right", x=12, y=30, speed=2.0)], s.occluder_x)
    frames = render(s).frames
    frames[19:] = render(recoloured).frames[19:]  # centre reaches the pole at frame 19
    o = only(analyze(frames))
    assert o.colours == ["purple", "yellow"] and o.permanence.holds is False
    gone = render(scene([obj("circle", "green", "still")], num_frames=17)).frames
    gone[8:] = gone[0, 0, 0]  # the sand background: the ball disappears in plain view
    assert "plain view" in only(analyze(gone)).permanence.reason


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("frames, message", [
    (np.zeros((2, 64, 64, 4), np.uint8), "shape"),
    (np.zeros((64, 64), np.uint8), "shape"),
    (np.zeros((2, 8, 64, 3), np.uint8), "16x16"),
    (np.zeros((2, 64, 64, 3), np.int32), "dtype"),
    (np.full((2, 64, 64, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((2, 64, 64, 3), np.nan, np.float32), r"\[0, 1\]"),
    ([[[[0, 0, 0]]]], "numpy array"),
])
def test_bad_frames_raise(frames, message):
    with pytest.raises(ValueError, match=message):
        analyze(frames)


def test_bad_arguments_raise():
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    for bad in [(3, 3), (0, 6), (-1, 2), (1,), "ab"]:
        with pytest.raises(ValueError, match="frame_range"):
            analyze(frames, bad)
    a = analyze(frames)
    assert a.objects == [] and dominant_object(a) is None
    with pytest.raises(ValueError, match="colour='teal'"):
        matches(a, colour="teal")
    with pytest.raises(ValueError, match="motion='fly'"):
        find_objects(a, motion="fly")


# ----------------------------------------------------------------------------
# Agreement on sampled clips (the bench in miniature)
# ----------------------------------------------------------------------------

def agreement(num_clips: int, degrade: bool) -> dict:
    """Share of true objects whose colour/shape/motion the analyzer reports
    (matched by colour, segment 0 of storyboards)."""
    sizes = [(64, 64), (64, 112), (112, 64)]
    hits = {"colour": 0, "shape": 0, "motion": 0}
    total = 0
    for i in range(num_clips):
        h, w = sizes[i % 3]
        s = sample_scene(EVAL_SEED_START + 7_000 + i, "eval", height=h, width=w, num_frames=(1, 17, 33)[i // 3 % 3])
        frames = render(s).frames
        a = analyze(blur_and_noise(frames, i) if degrade else frames, s.segment_ranges()[0])
        for o in s.objects:
            total += 1
            found = [x for x in a.objects if x.colour == o.colours[0]]
            if found:
                hits["colour"] += 1
                hits["shape"] += found[0].shape == o.shape
                hits["motion"] += found[0].motion == o.motions[0].kind
    return {k: v / total for k, v in hits.items()}


def test_agreement_on_sampled_clips():
    for attribute, share in agreement(60, degrade=False).items():
        assert share >= 0.95, (attribute, share)


def test_agreement_after_blur_and_noise():
    for attribute, share in agreement(24, degrade=True).items():
        assert share >= 0.9, (attribute, share)


@pytest.mark.parametrize("style", [s for s in STYLES if s != "none"])
def test_styles_degrade_gracefully(style):
    s = sample_scene(EVAL_SEED_START + 11, "eval", width=112, num_frames=17, style=style, num_objects=1,
                     storyboard=False, colour="blue", shape="square", motion="right")
    o = dominant_object(analyze(render(s).frames))
    assert o is not None and o.colour == "blue" and o.motion == "right"
    assert math.isfinite(o.radius)


@pytest.mark.parametrize("seed", range(6))
def test_never_crashes_on_what_an_untrained_generator_draws(seed):
    """Generated clips can be anything: noise, specks that vanish, colour soup. The analyzer
    must describe them (possibly as nothing), never raise."""
    from sora_hf.eval import analyze

    rng = np.random.default_rng(seed)
    F, H, W = (1, 17, 9)[seed % 3], 64, (64, 112)[seed % 2]
    noise = rng.random((F, H, W, 3)).astype(np.float32)
    blocky = np.kron(rng.random((F, H // 8, W // 8, 3)), np.ones((1, 8, 8, 1))).astype(np.float32)
    specks = np.full((F, H, W, 3), 0.1, np.float32)
    for f in range(0, F, 2):
        y, x = rng.integers(0, H - 3), rng.integers(0, W - 3)
        specks[f, y:y + 2, x:x + 2] = np.array([230, 50, 50]) / 255
    for frames in (noise, blocky, specks):
        analysis = analyze(frames)
        assert analysis.height == H and all(o.colour for o in analysis.objects)
