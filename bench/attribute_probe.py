"""Which words does the DiT listen to? A counterfactual-caption probe.

Adherence (bench/adherence.py) says *that* an attribute is missed; this says
*why*. For each evaluation scene the true clip is encoded, noised at a few
levels, and the DiT's velocity error is measured under the scene's own caption
and under the caption of the same scene with one attribute changed (colour,
shape, motion or background, re-captioned by ShapeWorld itself). A model that
uses an attribute predicts the true clip worse under the wrong word: the
relative loss penalty and how often the true caption wins measure how strongly
each attribute steers it. The wrong caption is also given to one conditioning
path only, the token states (cross-attention) or the pooled embedding
(adaLN), to show which path carries which attribute.

    python bench/attribute_probe.py --model pipelines/sora-tiny --num-scenes 60
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sora_hf.data import frames_to_video
from sora_hf.shapeworld import (ASPECT_RATIOS, COUNTERFACTUAL_ATTRIBUTES, EVAL_SEED_START, caption, counterfactual,
                                render_scene, sample_scene)

SIGMAS = (0.3, 0.6, 0.9)
PATHS = ("both", "tokens", "pooled")  # where the wrong caption goes


@torch.no_grad()
def velocity_error(transformer, z, sigma: float, noise, text) -> float:
    """Mean squared error of the predicted flow-matching velocity for latents z noised to sigma."""
    states, mask, pooled = text
    frames = z.shape[2]
    v = transformer((1 - sigma) * z + sigma * noise, torch.full((1, frames), sigma * 1000.0), states, mask,
                    pooled).sample
    return float((v - (noise - z)).square().mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pipelines/sora-tiny")
    parser.add_argument("--num-scenes", type=int, default=60)
    parser.add_argument("--out", default="bench/results/attribute_probe.json")
    args = parser.parse_args()

    from sora_hf.app import load_pipeline

    pipe = load_pipeline(args.model)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    ratios = list(ASPECT_RATIOS.values())
    penalty = defaultdict(list)  # (attribute, path) -> relative loss increase under the wrong caption
    start = time.time()
    for i in tqdm(range(args.num_scenes), desc="attribute probe", unit="scene"):
        h, w = ratios[i % len(ratios)]
        scene = sample_scene(EVAL_SEED_START + 31337 + 7919 * i, "eval", height=h, width=w,
                             num_frames=1 if i % 4 == 3 else 17, storyboard=False, num_objects=1, style="none")
        clip = render_scene(scene)
        z = pipe.encode_video(frames_to_video(clip.frames)[None])  # (1, C, F', H', W')
        noises = {s: torch.randn(z.shape, generator=generator) for s in SIGMAS}
        # one changed scene per attribute, so the short and the long caption are probed with the same change
        others = {a: counterfactual(scene, a, rng) for a in COUNTERFACTUAL_ATTRIBUTES}
        wrong_captions = {a: caption(other) for a, other in others.items() if other is not None}
        for kind in ("short", "long"):
            right = pipe.encode_prompt(getattr(clip.captions, kind))
            base = {s: velocity_error(pipe.transformer, z, s, noises[s], right) for s in SIGMAS}
            for attribute, captions in wrong_captions.items():
                wrong = pipe.encode_prompt(getattr(captions, kind))
                texts = {"both": wrong, "tokens": (wrong[0], wrong[1], right[2]), "pooled": (*right[:2], wrong[2])}
                for path, text in texts.items():
                    for s in SIGMAS:
                        error = velocity_error(pipe.transformer, z, s, noises[s], text)
                        penalty[attribute, path].append(error / base[s] - 1)

    summary = {a: {p: {"penalty": float(np.mean(penalty[a, p])), "true_caption_wins": float(np.mean(
        np.array(penalty[a, p]) > 0)), "n": len(penalty[a, p])} for p in PATHS} for a in COUNTERFACTUAL_ATTRIBUTES}
    print(f"velocity-loss penalty of a wrong word (and how often the true caption wins), sigmas {SIGMAS}")
    print(f"{'attribute':12s}" + "".join(f"{'wrong in ' + p:>24s}" for p in PATHS))
    for a in COUNTERFACTUAL_ATTRIBUTES:
        cells = [f"{100 * summary[a][p]['penalty']:+8.1f}% ({100 * summary[a][p]['true_caption_wins']:3.0f}% wins)"
                 for p in PATHS]
        print(f"{a:12s}" + "".join(f"{c:>24s}" for c in cells))
    result = {"model": args.model, "num_scenes": args.num_scenes, "sigmas": list(SIGMAS),
              "seconds": round(time.time() - start, 1), "attributes": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
