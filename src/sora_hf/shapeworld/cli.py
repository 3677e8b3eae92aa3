"""`sora-hf shapeworld`: render ShapeWorld clips with their captions — the
quickest way to see the world the shipped model was trained on."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tqdm.auto import tqdm

from .world import (ASPECT_RATIOS, BACKGROUNDS, COLOURS, DURATIONS, EVAL_SEED_START, MOTIONS, SHAPES, SPLITS,
                    STYLES, check_choice)

FORMATS = ("mp4", "gif", "both")


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (e.g. 112x64) or an aspect-ratio name ('16:9') -> (height, width)."""
    if text in ASPECT_RATIOS:
        return ASPECT_RATIOS[text]
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size={text!r} must be WIDTHxHEIGHT (e.g. 112x64) or one of {list(ASPECT_RATIOS)}")
    return height, width


def parse_frames(text: str) -> int:
    """A frame count (1 + 4k) or a duration name ('image', '2s', '4s', '8s')."""
    if text in DURATIONS:
        return DURATIONS[text]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--frames={text!r} must be 1 + 4k (1, 17, 33, 65) or one of {list(DURATIONS)}")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "shapeworld", help="render ShapeWorld clips (mp4/gif) with their captions",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="outputs/shapeworld", help="output folder")
    p.add_argument("--seed", type=int, default=None,
                   help="first seed (default: 0 for train, %d, the first eval seed, for eval)" % EVAL_SEED_START)
    p.add_argument("--num", type=int, default=4, help="number of clips (consecutive seeds)")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--size", default="1:1", help="WIDTHxHEIGHT, multiples of 16, or " + ", ".join(ASPECT_RATIOS))
    p.add_argument("--tier", type=int, default=1, choices=(1, 2), help="2 doubles both sides of --size")
    p.add_argument("--frames", default="2s", help="1 + 4k frames, or " + ", ".join(DURATIONS))
    p.add_argument("--style", default="none", help="one of " + ", ".join(STYLES))
    p.add_argument("--objects", type=int, default=None, help="1 or 2 (default: random)")
    p.add_argument("--storyboard", action=argparse.BooleanOptionalAction, default=None,
                   help="two-segment clip (default: random)")
    p.add_argument("--occluder", action=argparse.BooleanOptionalAction, default=None, help="a pole in front")
    p.add_argument("--colour", default=None, help="first object's colour: " + ", ".join(COLOURS))
    p.add_argument("--shape", default=None, help="first object's shape: " + ", ".join(SHAPES))
    p.add_argument("--motion", default=None, help="first object's motion: " + ", ".join(MOTIONS))
    p.add_argument("--background", default=None, help="one of " + ", ".join(BACKGROUNDS))
    p.add_argument("--format", default="both", choices=FORMATS)
    p.add_argument("--upscale", type=int, default=4, help="nearest-neighbour upscale for display (1 = native)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..video_io import write_video  # PyAV is only needed once we write files
    from . import render_clip, sample_scene

    check_choice("--style", args.style, STYLES)
    if args.num < 1:
        raise ValueError(f"--num={args.num} must be >= 1")
    if args.upscale < 1:
        raise ValueError(f"--upscale={args.upscale} must be an integer >= 1")
    if args.seed is None:
        args.seed = EVAL_SEED_START if args.split == "eval" else 0
    height, width = parse_size(args.size)
    height, width = height * args.tier, width * args.tier
    num_frames = parse_frames(args.frames)
    scene_kwargs = dict(height=height, width=width, num_frames=num_frames, style=args.style,
                        num_objects=args.objects, storyboard=args.storyboard, occluder=args.occluder,
                        colour=args.colour, shape=args.shape, motion=args.motion, background=args.background)
    for seed in (args.seed, args.seed + args.num - 1):  # bad input fails here, before any file is written
        sample_scene(seed, args.split, **scene_kwargs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in tqdm(range(args.seed, args.seed + args.num), desc="rendering", unit="clip"):
        clip = render_clip(seed, args.split, **scene_kwargs)
        stem = out / f"shapeworld_{args.split}_{seed}"
        is_image = num_frames == 1
        if args.format in ("mp4", "both"):
            write_video(stem.with_suffix(".png" if is_image else ".mp4"), clip.frames, upscale=args.upscale)
        if args.format in ("gif", "both") and not is_image:
            write_video(stem.with_suffix(".gif"), clip.frames, upscale=args.upscale)
        record = {"seed": seed, "split": args.split, "captions": dataclasses.asdict(clip.captions),
                  "scene": dataclasses.asdict(clip.scene)}
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
        tqdm.write(f"{stem.name}: {clip.captions.short}")
    print(f"wrote {args.num} clip(s) to {out}/")
    return 0
