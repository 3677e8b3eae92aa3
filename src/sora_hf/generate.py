"""`sora-hf generate`: text -> video (or image) files with a pipeline folder.

    sora-hf generate "a red ball bouncing on sand" --aspect-ratio 16:9 --frames 2s --variations 2
    sora-hf generate "a blue square spinning" --frames image --seed 7
    sora-hf generate --storyboard "a red ball moving right@0-9" "a red ball bouncing@9-17"
    sora-hf generate "a green ball sliding left" --image first_frame.png     # image -> video
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import re
from pathlib import Path

from .app import INT8_HELP
from .shapeworld.cli import parse_frames, parse_size

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "pipelines" / "sora-tiny"
STORYBOARD_CARD = re.compile(r"^(?P<text>.+)@(?P<start>\d+)-(?P<end>\d+)$")


def parse_storyboard(cards: list[str]) -> list[tuple[str, int, int]]:
    """["text@start-end", ...] -> [(text, start, end), ...] (end exclusive)."""
    board = []
    for card in cards:
        m = STORYBOARD_CARD.match(card.strip())
        if not m:
            raise ValueError(f"--storyboard card {card!r} must look like 'TEXT@START-END' (frames, end exclusive)")
        board.append((m["text"].strip(), int(m["start"]), int(m["end"])))
    return board


def unused_path(folder: Path, stem: str, suffix: str) -> Path:
    """folder/stem+suffix, or stem-2, stem-3, ... where that file or its .json exists: a rerun with the same
    seed (another prompt, say) adds files instead of replacing the earlier ones."""
    path, k = folder / f"{stem}{suffix}", 1
    while path.exists() or path.with_suffix(".json").exists():
        k += 1
        path = folder / f"{stem}-{k}{suffix}"
    return path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate videos or images from text",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", nargs="?", default=None, help="what to show (omit with --storyboard)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder or owner/name Hub repo")
    p.add_argument("--aspect-ratio", "--size", dest="size", default="1:1",
                   help="16:9, 1:1, 9:16 or WIDTHxHEIGHT (multiples of 16)")
    p.add_argument("--tier", type=int, default=1, choices=(1, 2), help="2 doubles both sides")
    p.add_argument("--frames", default="2s", help="1 + 4k frames, or image, 2s, 4s, 8s")
    # sampler settings default to SoraPipeline.__call__'s own, read from its signature in run() (not restated here)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the pipeline's)")
    p.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="noise levels (LOW, HIGH] where guidance applies; steps outside cost one DiT pass "
                        "(default: the pipeline's)")
    p.add_argument("--seed", type=int, default=None, help="default: random (the seed used is printed)")
    p.add_argument("--variations", type=int, default=1, help="videos per prompt (seeds seed, seed+1, ...)")
    p.add_argument("--storyboard", nargs="+", default=None, metavar="TEXT@START-END",
                   help="timeline of text cards instead of a prompt")
    p.add_argument("--image", default=None, help="an image to start the video from (image -> video)")
    p.add_argument("--out", default="outputs/generate", help="output folder")
    p.add_argument("--upscale", type=int, default=1, help="nearest-neighbour upscale of the written files")
    p.add_argument("--int8", action="store_true", help=INT8_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import PIL.Image
    import torch

    from .pipeline_sora import SoraCondition, SoraPipeline
    from .video_io import write_video

    defaults = inspect.signature(SoraPipeline.__call__).parameters
    sampler = {name: defaults[name].default if value is None else value
               for name, value in (("num_inference_steps", args.steps), ("guidance_scale", args.guidance),
                                   ("guidance_interval", args.guidance_interval and tuple(args.guidance_interval)))}

    height, width = parse_size(args.size)
    height, width = height * args.tier, width * args.tier
    num_frames = parse_frames(args.frames)
    storyboard = parse_storyboard(args.storyboard) if args.storyboard else None
    if (args.prompt is None) == (storyboard is None):
        raise ValueError("give a prompt or --storyboard cards (exactly one of them)")
    if args.variations < 1 or args.variations > 16:
        raise ValueError(f"--variations={args.variations} must be between 1 and 16")
    if args.upscale < 1:
        raise ValueError(f"--upscale={args.upscale} must be an integer >= 1")
    conditions = None
    if args.image:
        if not Path(args.image).is_file():
            raise ValueError(f"--image={args.image!r} does not exist")
        conditions = [SoraCondition(image=PIL.Image.open(args.image).convert("RGB"), frame_index=0, strength=1.0)]
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed={args.seed} must be in 0 .. 2**63 - 1")
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    out = Path(args.out)
    try:  # before the slow load and the sampling, so a bad folder costs nothing
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out={args.out!r} cannot be created: {error.strerror}") from None

    from .app import load_pipeline  # checks the folder before the slow load

    pipe = load_pipeline(args.model, int8=args.int8)
    pipe.set_progress_bar_config(disable=False, desc="denoising")
    generators = [torch.Generator().manual_seed(seed + k) for k in range(args.variations)]
    frames = pipe(prompt=args.prompt, negative_prompt=args.negative_prompt, height=height, width=width,
                  num_frames=num_frames, num_videos_per_prompt=args.variations, generator=generators,
                  conditions=conditions, storyboard=storyboard, **sampler).frames
    suffix = ".png" if num_frames == 1 else ".mp4"
    for k, video in enumerate(frames):
        path = unused_path(out, f"sora_{seed + k}", suffix)
        write_video(path, video, upscale=args.upscale)
        meta = {"prompt": args.prompt, "storyboard": storyboard, "seed": seed + k, "height": height, "width": width,
                "num_frames": num_frames, "steps": sampler["num_inference_steps"],
                "guidance": sampler["guidance_scale"], "guidance_interval": list(sampler["guidance_interval"]),
                "model": args.model, "int8": pipe.transformer.is_int8}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        print(f"{path}  (seed {seed + k})")
    return 0
