"""Held-out flow-matching error of DiT checkpoints: how far a run has learned.

Each eval scene's true clip (bench/adherence.py's plan, videos only, seeds the
training sampler never draws) is encoded by the pipeline's VAE, noised to fixed
levels sigma with fixed noise, and every transformer given predicts the
velocity (noise - clean) from it and the scene's short caption, with no
guidance. The same clips, noise and text go to each checkpoint, so the
differences are the weights': two short training runs (an lr, a loss weight)
can be told apart in minutes, where adherence needs a trained model and
hundreds of scenes to rise above its noise.

    python bench/velocity_error.py runs/lr-a/transformer runs/lr-b/transformer --num-scenes 48
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from adherence import video_plan
from attribute_probe import velocity_error
from tqdm.auto import tqdm

from sora_hf.data import frames_to_video
from sora_hf.shapeworld import render_clip
from sora_hf.training.common import write_json

SIGMAS = (0.2, 0.5, 0.8, 0.95)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transformers", nargs="+", help="transformer folders (save_pretrained) to compare")
    parser.add_argument("--model", default="pipelines/sora-tiny", help="pipeline folder: its VAE and text encoder")
    parser.add_argument("--num-scenes", type=int, default=48, help="video scenes (eval split, one object)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS, help="noise levels in (0, 1]")
    parser.add_argument("--out", default="bench/results/velocity_error.json")
    args = parser.parse_args()
    if not all(0.0 < s <= 1.0 for s in args.sigmas):
        parser.error(f"--sigmas {args.sigmas}: every level must lie in (0, 1]")

    from sora_hf.app import load_pipeline
    from sora_hf.models.transformer_sora import SoraTransformer3DModel

    pipe = load_pipeline(args.model)
    plan = video_plan(args.num_scenes)
    generator = torch.Generator().manual_seed(0)
    cases = []  # (clean latents (1, C, F', h, w), noise, (text states, mask, pooled))
    for item in tqdm(plan, desc="encode scenes", unit="scene"):
        clip = render_clip(item["seed"], "eval", **item["kwargs"])
        z0 = pipe.encode_video(frames_to_video(clip.frames)[None])
        cases.append((z0, torch.randn(z0.shape, generator=generator), pipe.encode_prompt(clip.captions.short)))

    results = {}
    print(f"{'transformer':40s} " + " ".join(f"{f'sigma {s:g}':>10s}" for s in args.sigmas) + f" {'mean':>8s}")
    for path in args.transformers:
        model = SoraTransformer3DModel.from_pretrained(path).eval()
        errors = {s: [] for s in args.sigmas}
        for z0, noise, text in cases:
            for s in args.sigmas:
                errors[s].append(velocity_error(model, z0, s, noise, text))
        row = {f"sigma {s:g}": round(float(np.mean(e)), 4) for s, e in errors.items()}
        row["mean"] = round(float(np.mean(list(row.values()))), 4)
        results[path] = row
        print(f"{path:40s} " + " ".join(f"{v:10.4f}" for v in row.values()))
    write_json(args.out, {"model": args.model, "num_scenes": len(plan), "sigmas": list(args.sigmas),
                          "velocity_mse": results})


if __name__ == "__main__":
    main()
