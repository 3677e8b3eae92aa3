"""ShapeWorld: the renderer, the simulation and the captions follow shared/shapeworld.md."""

import math

import numpy as np
import pytest

from sora_hf.shapeworld import (BACKGROUNDS, COLOURS, COUNTERFACTUAL_ATTRIBUTES, EVAL_SEED_START, HELD_OUT, MOTIONS,
                                PALETTE, SHAPE_WORDS, SHAPES, SIZES, STYLE_TRIGGERS, STYLES, caption, counterfactual,
                                render_clip, sample_scene, simulate)
from sora_hf.shapeworld.captions import MAX_SHORT_WORDS
from sora_hf.shapeworld.world import GRAVITY, OCCLUDER_RGB, bottom_extent


def colour_distance(a, b):
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max())


# ----------------------------------------------------------------------------
# canvas, time, determinism
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("height,width,frames", [(64, 64, 1), (64, 112, 17), (112, 64, 33), (128, 224, 5), (16, 48, 9)])
def test_any_size_multiple_of_16_and_1_plus_4k_frames(height, width, frames):
    clip = render_clip(3, height=height, width=width, num_frames=frames)
    assert clip.frames.shape == (frames, height, width, 3) and clip.frames.dtype == np.uint8


def test_same_seed_same_clip_and_different_seeds_differ():
    a, b = render_clip(11, style="stop-motion"), render_clip(11, style="stop-motion")
    assert np.array_equal(a.frames, b.frames) and a.captions == b.captions
    assert not np.array_equal(a.frames, render_clip(12).frames)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(height=50), "height=50"), (dict(width=0), "width=0"), (dict(num_frames=16), "num_frames=16"),
    (dict(colour="teal"), "'teal'"), (dict(shape="hexagon"), "'hexagon'"), (dict(motion="zigzag"), "'zigzag'"),
    (dict(style="vaporwave"), "'vaporwave'"), (dict(background="mars"), "'mars'"),
    (dict(colour="purple", shape="triangle"), "held out"), (dict(num_objects=3), "num_objects=3"),
    (dict(shape="circle", motion="spin"), "spin"), (dict(num_frames=1, motion="left"), "motion='left'"),
    (dict(colour="white", background="sky"), "white"), (dict(style="neon", background="sand"), "neon"),
])
def test_bad_input_names_the_value(kwargs, needle):
    with pytest.raises(ValueError, match="allowed|must|held out|needs|never|does not go") as error:
        render_clip(1, **kwargs)
    assert needle in str(error.value)


def test_seed_ranges_per_split():
    with pytest.raises(ValueError, match="outside the 'train' range"):
        sample_scene(EVAL_SEED_START, "train")
    with pytest.raises(ValueError, match="outside the 'eval' range"):
        sample_scene(5, "eval")
    with pytest.raises(ValueError, match="split='test'"):
        sample_scene(5, "test")


# ----------------------------------------------------------------------------
# palette, backgrounds, shapes, sizes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("colour", COLOURS)
def test_object_colour_is_the_palette_colour(colour):
    bg = "black" if colour == "white" else "sky"
    shape = "circle" if colour == "orange" else "square"  # orange squares are held out of training
    clip = render_clip(5, colour=colour, shape=shape, motion="still", background=bg, num_objects=1, num_frames=1,
                       occluder=False)
    track = clip.tracks[0]
    centre = clip.frames[0, int(track.y[0]), int(track.x[0])]
    assert colour_distance(centre, PALETTE[colour]) <= 0.15 * 255  # shading stays within +-15%


@pytest.mark.parametrize("background", ["black", "gray", "sand", "sky"])
def test_backgrounds(background):
    clip = render_clip(8, background=background, num_objects=1, occluder=False, num_frames=1, colour="red")
    top, bottom = BACKGROUNDS[background]
    frame = clip.frames[0].astype(float)
    rows = [frame[0], frame[-1]]  # a shape never covers a whole row
    for row, expected in zip(rows, (top, bottom)):
        counts = {}
        for px in map(tuple, row.round().astype(int)):
            counts[px] = counts.get(px, 0) + 1
        dominant = max(counts, key=counts.get)
        assert colour_distance(dominant, expected) <= 4


@pytest.mark.parametrize("shape,area_per_r2", [("circle", math.pi), ("square", 2.0), ("triangle", 3 * math.sqrt(3) / 4)])
@pytest.mark.parametrize("size", list(SIZES))
def test_shape_areas_match_their_geometry(shape, area_per_r2, size):
    """Radius is centre-to-farthest-point at 12/17/22% of the shorter side."""
    scene = sample_scene(21, shape=shape, motion="still", num_objects=1, occluder=False, num_frames=1,
                         background="black", colour="yellow", height=128, width=128)
    scene.objects[0].size = size
    scene.objects[0].x = scene.objects[0].y = 64.0
    from sora_hf.shapeworld import render_scene
    clip = render_scene(scene)
    bg = np.array(BACKGROUNDS["black"][0], float)
    coverage = np.abs(clip.frames[0].astype(float) - bg).max(-1) / np.abs(np.array(PALETTE["yellow"]) - bg).max()
    r = SIZES[size] * 128
    assert coverage.clip(0, 1.2).sum() == pytest.approx(area_per_r2 * r * r, rel=0.08)


# ----------------------------------------------------------------------------
# motions and physics
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("motion,axis,sign", [("left", "x", -1), ("right", "x", 1), ("up", "y", -1), ("down", "y", 1)])
def test_constant_velocity_motions(motion, axis, sign):
    scene = sample_scene(4, motion=motion, num_objects=1, height=128, width=128)
    track = simulate(scene)[0]
    steps = np.diff(getattr(track, axis))
    speed_at_64 = sign * steps / (128 / 64)
    assert np.allclose(steps, steps[0]) and 1.5 <= speed_at_64[0] <= 3.0


def test_bounce_follows_gravity_and_loses_energy():
    scene = sample_scene(9, motion="bounce", num_objects=1, num_frames=65, shape="circle")
    track = simulate(scene)[0]
    floor = scene.height - bottom_extent("circle", scene.radius(scene.objects[0]))
    assert len(track.bounces) >= 2 and track.y.max() <= floor + 1e-6
    # between bounces the vertical track is a parabola with the world's gravity
    first = track.bounces[0]
    assert np.allclose(np.diff(track.y[:first], n=2), GRAVITY * scene.speed_scale)
    # apexes get lower: restitution 0.75-0.9 makes every bounce smaller
    heights = [floor - track.y[a:b].min() for a, b in zip(track.bounces, track.bounces[1:])]
    assert all(later < earlier for earlier, later in zip(heights, heights[1:]))


def test_spin_rotates_in_place_and_still_does_not_move():
    for shape in ("square", "triangle"):
        track = simulate(sample_scene(2, shape=shape, motion="spin", num_objects=1))[0]
        step = abs(((np.diff(track.angle) + 180) % 360) - 180)
        assert np.all((10 <= step) & (step <= 25)) and np.ptp(track.x) == 0 == np.ptp(track.y)
    track = simulate(sample_scene(2, motion="still", num_objects=1))[0]
    assert np.ptp(track.x) == np.ptp(track.y) == np.ptp(track.angle) == 0


def test_occluder_is_in_front_and_the_object_comes_out_the_other_side():
    clip = render_clip(6, motion="right", num_objects=1, occluder=True, num_frames=33, height=64, width=112,
                       background="sand", colour="blue")
    pole = int(clip.scene.occluder_x)
    assert all(colour_distance(f[:, pole].mean(0), OCCLUDER_RGB) < 2 for f in clip.frames)
    x = clip.tracks[0].x
    assert x[0] < clip.scene.occluder_x < x[-1]  # it passes behind
    blue = (np.abs(clip.frames.astype(float) - PALETTE["blue"]).max(-1) < 40).sum((1, 2))
    assert blue[0] > 0 and blue[-1] > 0.8 * blue[0]  # and re-appears whole


# ----------------------------------------------------------------------------
# storyboards, styles, captions, splits
# ----------------------------------------------------------------------------

def test_storyboard_two_segments_split_on_a_latent_frame_boundary():
    for seed in range(40):
        clip = render_clip(seed, storyboard=True, num_frames=33)
        (s0, e0), (s1, e1) = clip.scene.segment_ranges()
        assert s0 == 0 and e0 == s1 and e1 == 33 and (s1 - 1) % 4 == 0
        segs = clip.captions.segments
        assert [(s.start, s.end) for s in segs] == [(s0, e0), (s1, e1)]
        changed = [o for o in clip.scene.objects if o.colours[0] != o.colours[1] or o.motions[0] != o.motions[1]]
        assert len(changed) == 1
        o = changed[0]
        if o.colours[0] != o.colours[1]:
            assert segs[1].short.count(o.colours[1]) and clip.tracks[0 if o is clip.scene.objects[0] else 1].colour[s1] == o.colours[1]


def test_styles_do_what_they_say():
    base = dict(num_objects=1, colour="red", shape="square", motion="right", occluder=False, num_frames=17)
    pixel = render_clip(3, style="pixel", **base).frames
    assert (pixel.reshape(17, 8, 8, 8, 8, 3) == pixel.reshape(17, 8, 8, 8, 8, 3)[:, :, :1, :, :1]).all()
    stop = render_clip(3, style="stop-motion", **base).frames
    assert all(np.array_equal(stop[i], stop[i + 1]) for i in range(0, 16, 2))
    assert not np.array_equal(stop[1], stop[2])
    neon = render_clip(3, style="neon", **base)
    assert neon.scene.background == "black" and colour_distance(neon.frames[0, 0, 0], BACKGROUNDS["black"][0]) < 2
    sketch = render_clip(3, style="sketch", **base)
    assert sketch.scene.background == "paper" and colour_distance(sketch.frames[0, 0, 0], BACKGROUNDS["paper"][0]) < 2
    none = render_clip(3, style="none", **base).frames
    for frames in (neon.frames, sketch.frames):  # outlines: the centre of the square is not filled solid red
        assert (np.abs(frames.astype(float) - PALETTE["red"]).max(-1) < 30).sum() < 0.6 * (
            np.abs(none.astype(float) - PALETTE["red"]).max(-1) < 30).sum()


def test_captions_short_long_synonyms_and_triggers():
    seen_words = set()
    for seed in range(300):
        style = STYLES[seed % len(STYLES)]
        clip = render_clip(seed, style=style, num_frames=(1, 17, 33)[seed % 3])
        caps = clip.captions
        for text in [caps.short] + [s.short for s in caps.segments]:
            assert len(text.split()) <= MAX_SHORT_WORDS, text
        obj = clip.scene.objects[0]
        assert obj.colours[0] in caps.long and clip.scene.background in caps.long
        assert STYLE_TRIGGERS[style] in caps.short
        seen_words |= {w for w in SHAPE_WORDS[obj.shape] if w in caps.short.split()}
    assert seen_words == {w for words in SHAPE_WORDS.values() for w in words}  # every synonym is used


def test_train_split_never_renders_held_out_compositions():
    seen_eval = set()
    for seed in range(2000):
        scene = sample_scene(seed, "train", storyboard=seed % 2 == 0, num_frames=17)
        assert not scene.is_held_out()
        seen_eval |= sample_scene(EVAL_SEED_START + seed, "eval").compositions() & HELD_OUT
    assert seen_eval == set(HELD_OUT)


def test_counterfactual_changes_exactly_one_attribute_of_one_object():
    def attributes(scene):
        return (scene.background, [(o.shape, tuple(o.colours), tuple(m.kind for m in o.motions), o.size, o.x, o.y)
                                   for o in scene.objects])

    rng = np.random.default_rng(0)
    changed_kinds, none_left = set(), 0
    for seed in range(200):
        scene = sample_scene(seed, num_frames=(1, 17)[seed % 2], storyboard=seed % 10 == 1,
                             style=("none", "neon")[seed % 7 == 0])
        for attribute in COUNTERFACTUAL_ATTRIBUTES:
            other = counterfactual(scene, attribute, rng)
            if other is None:
                # no image motion, no background for neon; rarely no shape or colour left that is not held out
                none_left += attribute in ("shape", "colour")
                assert attribute in ("shape", "colour") or (attribute == "motion" and scene.num_frames == 1) or (
                    attribute == "background" and scene.style == "neon")
                continue
            (bg, objs), (bg2, objs2) = attributes(scene), attributes(other)
            diffs = [(i, f) for i, (a, b) in enumerate(zip(objs, objs2)) for f in range(6) if a[f] != b[f]]
            if attribute == "background":
                assert bg2 != bg and not diffs
            else:
                field = {"shape": 0, "colour": 1, "motion": 2}[attribute]
                assert bg2 == bg and len(diffs) == 1 and diffs[0][1] == field
                changed_kinds.add((attribute, len(scene.objects)))
            assert not other.is_held_out()  # a train scene's negative never names a held-out composition
            assert caption(other).long != caption(scene).long
    assert changed_kinds == {(a, n) for a in ("shape", "colour", "motion") for n in (1, 2)} and none_left < 10
    with pytest.raises(ValueError, match="attribute='size'"):
        counterfactual(scene, "size", rng)


def test_every_vocabulary_item_occurs():
    scenes = [sample_scene(s, num_frames=17) for s in range(500)]
    assert {o.shape for sc in scenes for o in sc.objects} == set(SHAPES)
    assert {o.motion for sc in scenes for o in sc.objects} == set(MOTIONS)
    assert {o.size for sc in scenes for o in sc.objects} == set(SIZES)
    assert {sc.background for sc in scenes} == {"black", "gray", "sand", "sky"}
    assert {len(sc.objects) for sc in scenes} == {1, 2} and any(sc.occluder_x for sc in scenes)


# ----------------------------------------------------------------------------
# the `sora-hf shapeworld` command
# ----------------------------------------------------------------------------

def test_cli_renders_clips_with_captions(tmp_path):
    import json

    from sora_hf.cli import main
    from sora_hf.video_io import read_video

    assert main(["shapeworld", "--out", str(tmp_path), "--num", "2", "--size", "16:9", "--frames", "9",
                 "--style", "neon", "--upscale", "2", "--split", "eval"]) == 0
    stems = sorted(p.stem for p in tmp_path.glob("*.mp4"))
    assert stems == [f"shapeworld_eval_{EVAL_SEED_START}", f"shapeworld_eval_{EVAL_SEED_START + 1}"]
    frames = read_video(tmp_path / f"{stems[0]}.mp4")
    assert frames.shape == (9, 128, 224, 3)
    assert (tmp_path / f"{stems[0]}.gif").exists()
    record = json.loads((tmp_path / f"{stems[0]}.json").read_text())
    assert "neon" in record["captions"]["short"] and record["scene"]["style"] == "neon"
    assert main(["shapeworld", "--out", str(tmp_path), "--num", "1", "--frames", "image"]) == 0
    assert read_video(tmp_path / "shapeworld_train_0.png").shape == (1, 256, 256, 3)


@pytest.mark.parametrize("argv,needle", [
    (["--size", "50x64"], "width=50"), (["--frames", "16"], "num_frames=16"), (["--colour", "teal"], "'teal'"),
    (["--style", "vapor"], "'vapor'"), (["--split", "eval", "--seed", "3"], "seed=3"), (["--num", "0"], "--num=0"),
])
def test_cli_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    from sora_hf.cli import main

    out = tmp_path / "out"
    assert main(["shapeworld", "--out", str(out), *argv]) == 2
    assert needle in capsys.readouterr().err and not out.exists()
