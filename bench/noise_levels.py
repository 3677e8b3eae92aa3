"""Where along the noise schedule the DiT loses colour, shape and motion.

Text->video starts from pure noise (sigma 1). Here each eval scene's true clip
is noised to a level sigma and given back to the pipeline as a condition of
strength 1 - sigma (the remix / SDEdit path: every frame capped at sigma), with
the scene's short caption, and the analyzer scores what comes out exactly as
bench/adherence.py does. Two ways back from each level:
- `one step`: a single guided DiT step to sigma 0 (num_inference_steps=1), the
  model's estimate of the clean clip from that level: what it *knows* there;
- `sampled`: the pipeline's default sampler from that level down.
sigma 0 is the VAE's reconstruction (the ceiling), sigma 1 is plain text->video.
A level where `sampled` stays near the ceiling while the next one up falls is
where the layout (silhouette, trajectory) is decided and lost, which says
whether a shortfall needs the high-noise training, the sampler or the VAE.

    python bench/noise_levels.py --model pipelines/sora-tiny --num-scenes 40
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from adherence import ATTRIBUTES, dominant, percent, rates, scene_plan, score
from tqdm.auto import tqdm

from sora_hf.eval import analyze
from sora_hf.shapeworld import render_clip
from sora_hf.training.common import write_json

LEVELS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pipelines/sora-tiny")
    parser.add_argument("--num-scenes", type=int, default=40, help="video scenes (eval split, one object)")
    parser.add_argument("--levels", type=float, nargs="+", default=LEVELS, help="noise levels sigma in [0, 1]")
    parser.add_argument("--out", default="bench/results/noise_levels.json")
    args = parser.parse_args()
    if not all(0.0 <= s <= 1.0 for s in args.levels):
        parser.error(f"--levels {args.levels}: every level must lie in [0, 1]")

    from sora_hf.app import load_pipeline
    from sora_hf.pipeline_sora import SoraCondition

    pipe = load_pipeline(args.model)
    plan = [item for item in scene_plan(4 * args.num_scenes) if item["kwargs"]["num_frames"] > 1][:args.num_scenes]
    totals = defaultdict(lambda: defaultdict(list))  # (way, sigma) -> attribute -> [bool]
    start = time.time()
    for k, item in enumerate(tqdm(plan, desc="noise levels", unit="scene")):
        clip = render_clip(item["seed"], "eval", **item["kwargs"])
        scene = clip.scene
        for sigma in args.levels:
            ways = {"one step": 1, "sampled": None} if 0 < sigma < 1 else {"sampled": None}
            for way, steps in ways.items():
                frames = pipe(clip.captions.short, height=scene.height, width=scene.width,
                              num_frames=scene.num_frames, generator=torch.Generator().manual_seed(k),
                              conditions=[SoraCondition(video=clip.frames, strength=1.0 - sigma)],
                              **({"num_inference_steps": steps} if steps else {})).frames[0]
                for attribute, ok in score(dominant(analyze(frames)), scene).items():
                    totals[(way, sigma)][attribute].append(ok)

    summary = {f"{way} from {sigma:g}": rates(attrs) for (way, sigma), attrs in sorted(totals.items(),
                                                                                       key=lambda kv: kv[0][::-1])}
    print(f"{'from noise level':24s} {'colour':>8s} {'shape':>8s} {'motion':>8s} {'n':>5s}")
    for name, r in summary.items():
        print(f"{name:24s} {' '.join(percent(r, a) for a in ATTRIBUTES)} {r['n']:5d}")
    write_json(args.out, {"model": args.model, "num_scenes": len(plan), "seconds": round(time.time() - start, 1),
                          "levels": summary})


if __name__ == "__main__":
    main()
