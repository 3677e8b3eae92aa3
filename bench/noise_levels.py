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

`--wrong-shape` also samples each level under the caption of the same scene
with another shape (re-captioned by ShapeWorld), and reports how often the
analyzer reads the shape that caption names ("follows") and the clip's own
("keeps"). A model that uses the shape word redraws the silhouette from the
levels where it is still undecided; one that ignores it keeps the clip's shape
where the latent still carries it and reads at chance (1 in 3) above that.

    python bench/noise_levels.py --model pipelines/sora-tiny --num-scenes 40
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch
from adherence import ATTRIBUTES, dominant, percent, rates, score, video_plan, wilson_interval
from tqdm.auto import tqdm

from sora_hf.eval import analyze
from sora_hf.shapeworld import caption, counterfactual, render_clip
from sora_hf.training.common import write_json

LEVELS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pipelines/sora-tiny")
    parser.add_argument("--num-scenes", type=int, default=40, help="video scenes (eval split, one object)")
    parser.add_argument("--levels", type=float, nargs="+", default=LEVELS, help="noise levels sigma in [0, 1]")
    parser.add_argument("--wrong-shape", action="store_true",
                        help="also sample each level under a caption that names another shape")
    parser.add_argument("--out", default="bench/results/noise_levels.json")
    args = parser.parse_args()
    if not all(0.0 <= s <= 1.0 for s in args.levels):
        parser.error(f"--levels {args.levels}: every level must lie in [0, 1]")

    from sora_hf.app import load_pipeline
    from sora_hf.pipeline_sora import SoraCondition

    pipe = load_pipeline(args.model)
    plan = video_plan(args.num_scenes)
    totals = defaultdict(lambda: defaultdict(list))  # (way, sigma) -> attribute -> [bool]
    wrong_shape = defaultdict(lambda: defaultdict(list))  # sigma -> "follows" / "keeps" -> [bool]
    rng = np.random.default_rng(0)
    start = time.time()
    for k, item in enumerate(tqdm(plan, desc="noise levels", unit="scene")):
        clip = render_clip(item["seed"], "eval", **item["kwargs"])
        scene = clip.scene
        other = counterfactual(scene, "shape", rng) if args.wrong_shape else None

        def sample(prompt, sigma, steps=None):
            return pipe(prompt, height=scene.height, width=scene.width, num_frames=scene.num_frames,
                        generator=torch.Generator().manual_seed(k),
                        conditions=[SoraCondition(video=clip.frames, strength=1.0 - sigma)],
                        **({"num_inference_steps": steps} if steps else {})).frames[0]

        for sigma in args.levels:
            ways = {"one step": 1, "sampled": None} if 0 < sigma < 1 else {"sampled": None}
            for way, steps in ways.items():
                for attribute, ok in score(dominant(analyze(sample(clip.captions.short, sigma, steps))),
                                           scene).items():
                    totals[(way, sigma)][attribute].append(ok)
            if other is not None and sigma > 0:
                pick = dominant(analyze(sample(caption(other).short, sigma)))
                wrong_shape[sigma]["follows"].append(pick is not None and pick.shape == other.objects[0].shape)
                wrong_shape[sigma]["keeps"].append(pick is not None and pick.shape == scene.objects[0].shape)

    summary = {f"{way} from {sigma:g}": rates(attrs) for (way, sigma), attrs in sorted(totals.items(),
                                                                                       key=lambda kv: kv[0][::-1])}
    print(f"{'from noise level':24s} {'colour':>8s} {'shape':>8s} {'motion':>8s} {'n':>5s}")
    for name, r in summary.items():
        print(f"{name:24s} {' '.join(percent(r, a) for a in ATTRIBUTES)} {r['n']:5d}")
    result = {"model": args.model, "num_scenes": len(plan), "seconds": round(time.time() - start, 1),
              "levels": summary}
    if wrong_shape:
        print("sampled under a caption naming another shape: the shape read is the named one (follows) / the "
              "clip's own (keeps)")
        result["wrong_shape"] = {}
        for sigma, reads in sorted(wrong_shape.items()):
            result["wrong_shape"][f"sampled from {sigma:g}"] = {
                **{name: float(np.mean(v)) for name, v in reads.items()}, "n": len(reads["follows"]),
                "ci95": {name: wilson_interval(int(np.sum(v)), len(v)) for name, v in reads.items()}}
            print(f"{'sampled from ' + format(sigma, 'g'):24s} follows {100 * np.mean(reads['follows']):5.1f}%  "
                  f"keeps {100 * np.mean(reads['keeps']):5.1f}%")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
