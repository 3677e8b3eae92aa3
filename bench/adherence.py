"""Prompt adherence of a pipeline, measured by the ShapeWorld analyzer.

For each evaluation scene (seeds the training sampler never draws) the
pipeline generates a clip from the scene's `short` caption and another from
its `long` caption, at the scene's size and duration and the pipeline's default
settings; the analyzer then reads colour, shape and motion from the pixels.
Scenes hold one object, so the clip's dominant object is scored against it (a
noisy clip with the right colour only as a speck does not pass). Held-out
compositions (purple triangle, orange square, green circle), each aspect ratio,
each object size, images, and videos with and without the occluding pole (which
only the long captions mention, as "a gray pole") are reported separately, with
confusion tables of the colour, shape and motion read against those asked for
(which way the misses go).
Size (small / medium / large) is scored only where the caption names it (the
long captions do, the short ones do not), with the median radius of the
generated object over the one asked for.
Motion is scored on videos only, and every rate carries its 95% (Wilson)
interval, so two settings can be told apart from noise. For the videos that
ask for a slide (left, right, up, down) it also reports how fast the object
travels that way, against the true clips: a motion shortfall from objects that
stay put reads differently from one of objects that go the wrong way.
`--steps`, `--guidance-scale`, `--guidance-interval` and `--shift` measure other
sampler settings; `--images-only` scores images alone (a model trained on them).

The same scoring of the pipeline VAE's reconstruction of each true clip gives
the ceiling: what a perfect DiT could reach through this VAE, so a shortfall is
put on the right model. Beside the summary (`--out`) it writes one record per
generated clip (`--records`, JSON lines: the scene, what was asked, what the
analyzer read, every object it found), so a later question about the misses is
answered from the run instead of a new one, and two runs over the same scenes
are compared clip by clip (`bench/adherence_compare.py`: gained, lost, McNemar).

    python bench/adherence.py --model pipelines/sora-tiny --num-scenes 300
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sora_hf.data import frames_to_video
from sora_hf.eval import analyze
from sora_hf.shapeworld import ASPECT_RATIOS, EVAL_SEED_START, HELD_OUT, render_clip
from sora_hf.training.common import write_json

ATTRIBUTES = ("colour", "shape", "motion", "size")
TARGETS = {"colour": 0.9, "motion": 0.8, "shape": 0.8}


def scene_plan(num_scenes: int) -> list[dict]:
    """Aspect ratios cycle; every fourth scene an image (so images fall on every ratio); one in six scenes
    pinned to a held-out composition."""
    plan = []
    held = sorted(HELD_OUT)
    ratios = list(ASPECT_RATIOS.items())
    for i in range(num_scenes):
        ratio, (h, w) = ratios[i % len(ratios)]
        kwargs = dict(height=h, width=w, num_frames=1 if i % 4 == 3 else 17, storyboard=False, num_objects=1,
                      style="none")
        if i % 6 == 5:
            colour, shape = held[(i // 6) % len(held)]
            kwargs.update(colour=colour, shape=shape)
        plan.append({"seed": EVAL_SEED_START + 7919 * i, "ratio": ratio, "kwargs": kwargs})
    return plan


def video_plan(num_videos: int) -> list[dict]:
    """The first `num_videos` videos of `scene_plan` (images left out), for benches that need motion."""
    return _first_of_kind(num_videos, videos=True)


def image_plan(num_images: int) -> list[dict]:
    """The first `num_images` images of `scene_plan`, for a model trained on images only (`--images-only`)."""
    return _first_of_kind(num_images, videos=False)


def _first_of_kind(count: int, videos: bool) -> list[dict]:
    """Every fourth scene of `scene_plan` is an image, so 4 * count scenes hold enough of either kind."""
    return [item for item in scene_plan(4 * count) if (item["kwargs"]["num_frames"] > 1) == videos][:count]


def dominant(analysis):
    """The clip's dominant object (the largest visible area over its frames), or None."""
    return max(analysis.objects, key=lambda o: o.mean_area * o.track.visible.sum(), default=None)


def expected_motion(scene, segment: int = 0) -> str:
    """What the (only) object does in a video's segment; `score` asks it of videos only."""
    return scene.objects[0].motions[segment].kind


def names_size(caption: str, scene) -> bool:
    """Whether the caption asks for the (only) object's size: ShapeWorld's long captions name it, its short ones
    do not, and a caption that does not ask for a size cannot be followed or missed on it."""
    return re.search(rf"\b{scene.objects[0].size}\b", caption.lower()) is not None


def score(pick, scene, segment: int = 0, caption: str = "") -> dict[str, bool]:
    """The scene has one object, so the clip's (segment's) dominant object, `pick` (see `dominant`), must be
    it: a clip that shows the right colour only as a speck among others does not count. Motion is scored on
    videos only: one frame always reads "still", so an image would pass it for free. Size is scored where
    `caption` names it."""
    truth = scene.objects[0]
    start, end = scene.segment_ranges()[segment]
    attributes = ["colour", "shape"] + ["motion"] * (end - start > 1) + ["size"] * names_size(caption, scene)
    if pick is None:
        return {a: False for a in attributes}
    asked = {"colour": truth.colours[segment], "shape": truth.shape, "size": truth.size}
    result = {a: getattr(pick, a) == asked[a] for a in attributes if a != "motion"}
    if "motion" in attributes:
        result["motion"] = pick.motion == expected_motion(scene, segment)
    return result


def scene_record(item: dict, scene) -> dict:
    """What an evaluation scene is and asks for (motion: videos only), read once for both of its captions."""
    truth = scene.objects[0]
    return {"seed": item["seed"], "ratio": item["ratio"], "num_frames": scene.num_frames,
            "background": scene.background, "pole": scene.occluder_x is not None, "held_out": scene.is_held_out(),
            "asked": {"colour": truth.colours[0], "shape": truth.shape,
                      "motion": expected_motion(scene) if scene.num_frames > 1 else None,
                      "size": truth.size, "radius": round(float(scene.radius(truth)), 2)}}


def clip_record(info: dict, caption_kind: str, prompt: str, analysis, pick, result: dict) -> dict:
    """One generated clip: its scene (`scene_record`), its caption, what the analyzer read, and the objects found."""
    read = None if pick is None else {"colour": pick.colour, "shape": pick.shape, "motion": pick.motion,
                                      "size": pick.size, "radius": round(float(pick.radius), 2)}
    return {**info, "caption": caption_kind, "prompt": prompt, "read": read, "ok": result,
            "objects": [{"colour": o.colour, "shape": o.shape, "area": round(float(o.mean_area), 1)}
                        for o in analysis.objects]}


def radius_ratio(pick, scene) -> float:
    """The picked object's circumradius over the scene object's (the size the caption asks for); nan without one."""
    return pick.radius / scene.radius(scene.objects[0]) if pick is not None else float("nan")


DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # image axes: y grows downward


def travel(pick, motion: str) -> float:
    """How fast `pick` moves the way a sliding `motion` asks: its fitted velocity (px / frame) projected on that
    direction (negative: the other way; 0 when there is no object)."""
    if pick is None:
        return 0.0
    dx, dy = DIRECTIONS[motion]
    return float(pick.velocity[0] * dx + pick.velocity[1] * dy)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a success rate: honest at small n and near 0 or 1."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def rates(attrs: dict[str, list[bool]]) -> dict:
    """attribute -> [bool] => each attribute's success rate, its 95% interval, and the clips scored (n; motion
    counts videos only, size the captions that name it)."""
    return {**{a: float(np.mean(v)) for a, v in attrs.items()}, "n": len(attrs["colour"]),
            "n_motion": len(attrs.get("motion", [])), "n_size": len(attrs.get("size", [])),
            "ci95": {a: wilson_interval(int(np.sum(v)), len(v)) for a, v in attrs.items()}}


def percent(r: dict, attribute: str) -> str:
    return f"{100 * r[attribute]:7.1f}%" if attribute in r else f"{'-':>8s}"


def print_confusion(attribute: str, table: dict) -> None:
    """Rows: what the scenes asked for; columns: what the analyzer read on the generated clips."""
    columns = sorted({read for row in table.values() for read in row})
    print(f"{attribute} confusion (rows: asked for, columns: read on the generated clip)")
    print(" " * 10 + "".join(f"{name:>9s}" for name in columns))
    for truth, row in sorted(table.items()):
        print(f"{truth:10s}" + "".join(f"{row.get(name, 0):9d}" for name in columns))


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two frames in [0, 1], on their uint8 versions."""
    mse = np.mean((np.round(a * 255.0) - np.round(b * 255.0)) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@torch.no_grad()
def vae_roundtrip(pipe, frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 -> the pipeline VAE's reconstruction, as the pipeline returns frames: (F, H, W, 3)
    floats in [0, 1]."""
    decoded = pipe.decode_latents(pipe.encode_video(frames_to_video(frames)[None]))  # (1, 3, F, H, W)
    return pipe.video_processor.postprocess_video(decoded.float(), output_type="np")[0]


def image_to_video(pipe, num_scenes: int, call_defaults: dict) -> dict:
    """Image->video at strength 1: the eval scene's first frame is given, the short caption asks for the
    rest; the first decoded frame must match the image, and the clip should still follow the caption."""
    from sora_hf.pipeline_sora import SoraCondition

    psnrs, motion_ok = [], []
    for i in tqdm(range(num_scenes), desc="image->video", unit="scene"):
        clip = render_clip(EVAL_SEED_START + 104729 + 7919 * i, "eval", height=64, width=64, num_frames=17,
                           storyboard=False, num_objects=1, style="none")
        image = clip.frames[0]  # (H, W, 3) uint8
        frames = pipe(clip.captions.short, height=64, width=64, num_frames=17,
                      conditions=[SoraCondition(image=image, frame_index=0, strength=1.0)],
                      generator=torch.Generator().manual_seed(i), **call_defaults).frames[0]
        psnrs.append(psnr_uint8(frames[0], image / 255.0))
        motion_ok.append(score(dominant(analyze(frames)), clip.scene)["motion"])
    return {"scenes": num_scenes, "first_frame_psnr_mean": round(float(np.mean(psnrs)), 2),
            "first_frame_psnr_min": round(float(np.min(psnrs)), 2), "motion": float(np.mean(motion_ok)),
            "ci95": {"motion": wilson_interval(int(np.sum(motion_ok)), num_scenes)}}


def storyboard(pipe, num_scenes: int, call_defaults: dict) -> dict:
    """Two-segment eval storyboards (the object changes colour or motion at the cut), one card per
    segment's short caption; each segment is analysed on its own frames."""
    from sora_hf.eval import analyze_segments

    per_segment = defaultdict(lambda: defaultdict(list))
    for i in tqdm(range(num_scenes), desc="storyboard", unit="scene"):
        clip = render_clip(EVAL_SEED_START + 15485863 + 7919 * i, "eval", height=64, width=64, num_frames=33,
                           storyboard=True, num_objects=1, style="none")
        scene = clip.scene
        cards = [(seg.short, seg.start, seg.end) for seg in clip.captions.segments]
        frames = pipe(storyboard=cards, height=64, width=64, num_frames=33,
                      generator=torch.Generator().manual_seed(i), **call_defaults).frames[0]
        for s, analysis in enumerate(analyze_segments(frames, scene.segment_ranges())):
            for attribute, ok in score(dominant(analysis), scene, segment=s).items():
                per_segment[f"segment {s}"][attribute].append(ok)
    return {seg: rates(attrs) for seg, attrs in per_segment.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pipelines/sora-tiny")
    parser.add_argument("--num-scenes", type=int, default=300)
    parser.add_argument("--steps", type=int, default=None, help="default: the pipeline's default")
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's default")
    parser.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="noise levels where guidance applies; default: the pipeline's default")
    parser.add_argument("--shift", type=float, default=None,
                        help="the flow-matching scheduler's timestep shift; default: the pipeline's scheduler config")
    parser.add_argument("--i2v-scenes", type=int, default=30, help="image->video scenes (0: skip)")
    parser.add_argument("--storyboard-scenes", type=int, default=60, help="two-segment storyboards (0: skip)")
    parser.add_argument("--images-only", action="store_true",
                        help="score --num-scenes images only (the images of the usual plan; no targets, image->video "
                        "or storyboards), e.g. for a model trained on images")
    parser.add_argument("--int8", action="store_true", help="the DiT's blocks in int8 (quantize_int8)")
    parser.add_argument("--out", default="bench/results/adherence.json")
    parser.add_argument("--records", default=None,
                        help="one JSON line per generated clip; default: beside --out, as <name>_clips.jsonl")
    args = parser.parse_args()
    if args.images_only:  # image->video and storyboards are videos
        args.i2v_scenes = args.storyboard_scenes = 0

    from sora_hf.app import load_pipeline

    pipe = load_pipeline(args.model, int8=args.int8)
    if args.shift is not None:
        pipe.scheduler.set_shift(args.shift)
    call_defaults = {name: value for name, value in (("num_inference_steps", args.steps),
                                                     ("guidance_scale", args.guidance_scale),
                                                     ("guidance_interval", args.guidance_interval))
                     if value is not None}
    totals = defaultdict(lambda: defaultdict(list))  # group -> attribute -> [bool]
    ceiling = defaultdict(list)  # attribute -> [bool], the analyzer on VAE reconstructions of the true clips
    # attribute -> asked for -> read on the generated clip (its dominant object; "none": no object) -> count
    confusion = {a: defaultdict(lambda: defaultdict(int)) for a in ("colour", "shape", "motion")}
    speeds = defaultdict(list)  # "true" (the VAE's reconstruction) / "short" / "long" -> [px / frame], sliding videos
    radii = defaultdict(list)  # "true" / caption kind -> [read radius / asked radius], captions that name the size
    records = []  # one per generated clip (clip_record)
    start = time.time()
    plan = image_plan(args.num_scenes) if args.images_only else scene_plan(args.num_scenes)
    for item in tqdm(plan, desc="adherence", unit="scene"):
        clip = render_clip(item["seed"], "eval", **item["kwargs"])
        scene = clip.scene
        info = scene_record(item, scene)
        held, pole, asked = info["held_out"], info["pole"], info["asked"]["motion"]  # motion: asked of videos only
        true_pick = dominant(analyze(vae_roundtrip(pipe, clip.frames)))
        for attribute, ok in score(true_pick, scene, caption=clip.captions.long).items():
            ceiling[attribute].append(ok)
        radii["true"].append(radius_ratio(true_pick, scene))
        if asked in DIRECTIONS:
            speeds["true"].append(travel(true_pick, asked))
        for caption_kind in ("short", "long"):
            prompt = getattr(clip.captions, caption_kind)
            frames = pipe(prompt, height=scene.height, width=scene.width, num_frames=scene.num_frames,
                          generator=torch.Generator().manual_seed(item["seed"] % 2**31), **call_defaults).frames[0]
            analysis = analyze(frames)
            pick = dominant(analysis)
            result = score(pick, scene, caption=prompt)
            records.append(clip_record(info, caption_kind, prompt, analysis, pick, result))
            if "size" in result:
                radii[caption_kind].append(radius_ratio(pick, scene))
            for attribute, table in confusion.items():
                if info["asked"][attribute] is not None:  # images ask for no motion
                    table[info["asked"][attribute]][getattr(pick, attribute) if pick else "none"] += 1
            if asked in DIRECTIONS:
                speeds[caption_kind].append(travel(pick, asked))
            groups = [caption_kind, f"{caption_kind} {'held-out' if held else 'seen'}", f"ratio {item['ratio']}",
                      "image" if scene.num_frames == 1 else "video", f"size {info['asked']['size']}",
                      *([f"{caption_kind} video {'with' if pole else 'without'} pole"] if scene.num_frames > 1 else []),
                      *(["held-out"] if held else [])]
            for group in groups:
                for attribute, ok in result.items():
                    totals[group][attribute].append(ok)

    summary = {group: rates(attrs) for group, attrs in totals.items()}
    print(f"{'group':26s} {' '.join(f'{a:>8s}' for a in ATTRIBUTES)} {'n':>5s}")
    for group, r in sorted(summary.items()):
        print(f"{group:26s} {' '.join(percent(r, a) for a in ATTRIBUTES)} {r['n']:5d}")
    vae_ceiling = rates(ceiling)
    print(f"{'VAE reconstruction':26s} {' '.join(percent(vae_ceiling, a) for a in ATTRIBUTES)} "
          f"{vae_ceiling['n']:5d}  (the true clips through the VAE: the ceiling)")
    for attribute, table in confusion.items():
        if table:  # images ask for no motion
            print_confusion(attribute, table)
    translation = {name: round(float(np.median(v)), 2) for name, v in speeds.items()}
    translation["n"] = len(speeds.get("true", []))
    if translation["n"]:
        print(f"sliding videos (n={translation['n']}), median px/frame along the asked direction: true clips "
              f"{translation['true']:.2f}, short captions {translation['short']:.2f}, long {translation['long']:.2f}")
    radius = {}  # the median is of the objects found (nan: none, which the size rate counts as a miss)
    for name, values in radii.items():
        found = np.array(values)[~np.isnan(values)]
        if found.size:
            radius[name] = {"median": round(float(np.median(found)), 3), "n": int(found.size)}
    if radius:
        print("radius read / radius asked, median over objects found (captions that name the size; true: the VAE's "
              "reconstruction of the true clip): " + ", ".join(f"{k} {v['median']:.2f} (n={v['n']})"
                                                               for k, v in radius.items()))
    result = {"num_scenes": args.num_scenes, "images_only": args.images_only, "model": args.model,
              "seconds": round(time.time() - start, 1),
              "settings": call_defaults | {"shift": pipe.scheduler.shift, "int8": args.int8},
              "vae_ceiling": vae_ceiling,
              "confusion": {a: {truth: dict(row) for truth, row in table.items()} for a, table in confusion.items()},
              "translation_px_per_frame": translation, "radius_over_asked": radius,
              "by_caption": {k: summary[f"{k} seen"] for k in ("short", "long") if f"{k} seen" in summary},
              "held_out": summary.get("held-out"), "groups": summary,
              "targets": {"colour": TARGETS["colour"], "motion": TARGETS["motion"], "shape": TARGETS["shape"]}}
    if not args.images_only:  # the targets ask for motion
        seen = [summary[f"{k} seen"] for k in ("short", "long") if f"{k} seen" in summary]
        verdict = all(r[a] >= t for r in seen for a, t in TARGETS.items())
        print(f"targets on seen compositions (short and long): colour >= 90%, motion >= 80%, shape >= 80%: "
              f"{'PASS' if verdict else 'FAIL'}")
        result["verdict"] = "PASS" if verdict else "FAIL"
    if args.i2v_scenes:
        result["image_to_video"] = image_to_video(pipe, args.i2v_scenes, call_defaults)
        r = result["image_to_video"]
        print(f"image->video: first-frame PSNR mean {r['first_frame_psnr_mean']:.2f} dB (min "
              f"{r['first_frame_psnr_min']:.2f}; target >= 30), motion {100 * r['motion']:.1f}% "
              f"({r['scenes']} scenes)")
    if args.storyboard_scenes:
        result["storyboard"] = storyboard(pipe, args.storyboard_scenes, call_defaults)
        for seg, r in result["storyboard"].items():
            print(f"storyboard {seg}: colour {100 * r['colour']:.1f}%, shape {100 * r['shape']:.1f}%, "
                  f"motion {100 * r['motion']:.1f}% (n={r['n']})")
    out = Path(args.out)
    write_json(out, result)
    records_path = Path(args.records) if args.records else out.with_name(f"{out.stem}_clips.jsonl")
    records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"wrote {out} and {records_path} ({len(records)} clips)")


if __name__ == "__main__":
    main()
