"""End-to-end generation time of a pipeline: text -> decoded frames, at its default settings.

    python bench/pipeline_speed.py [--model pipelines/sora-tiny] [--threads 2] [--repeats 5]

Times the default clip (17 frames, 64x64: 2.1 s of video at 8 fps) and a 64x64 image, median of
--repeats runs after one warm-up run, with the text encoder, every denoising step (classifier-free
guidance included) and the VAE decode; then both again with the DiT's blocks in int8
(`quantize_int8`, the CPU option of `sora-hf generate --int8`). The target is the clip's own
duration: generating it must be faster than playing it. Also reports the process's peak resident memory. Writes
bench/results/pipeline_speed.json (its "card" entry is what the model card shows).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from sora_hf.training.common import write_json

CASES = {"17x64x64 clip": dict(num_frames=17, height=64, width=64),
         "64x64 image": dict(num_frames=1, height=64, width=64)}
TARGET_S = 17 / 8  # the default clip plays for 2.1 s at 8 fps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pipelines/sora-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/pipeline_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from sora_hf.pipeline_sora import SoraPipeline

    pipe = SoraPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    prompt = "a red circle bouncing on a sky background"
    results = {}
    for precision in ("", " int8"):
        if precision:
            pipe.transformer.quantize_int8()
        for case, size in CASES.items():
            name = case + precision
            pipe(prompt, generator=torch.Generator().manual_seed(0), **size)  # warm-up
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                pipe(prompt, generator=torch.Generator().manual_seed(r), **size)
                times.append(time.perf_counter() - start)
            results[name] = {"median_s": round(statistics.median(times), 3), "times_s": [round(t, 3) for t in times]}
            print(f"{name:21s} median {results[name]['median_s']:.3f} s over {args.repeats} runs")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    clip = results["17x64x64 clip"]["median_s"]
    verdict = "PASS" if clip <= TARGET_S else "FAIL"
    print(f"default clip vs its playing time {TARGET_S:.3f} s: {clip / TARGET_S:.2f}x ({verdict}); "
          f"peak RSS {peak_mib:.0f} MiB")
    machine = f"{platform.machine()} CPU, {args.threads} threads, fp32"
    out = {"model": args.model, "threads": args.threads, "repeats": args.repeats,
           "settings": "the pipeline's defaults (20 steps, guidance 4.0)",
           "cases": results, "target_s": round(TARGET_S, 3), "ratio_to_target": round(clip / TARGET_S, 3),
           "verdict": verdict, "peak_rss_mib": round(peak_mib),
           "card": {"machine": machine, "17-frame 64x64 clip": f"{clip:.2f} s",
                    "64x64 image": f"{results['64x64 image']['median_s']:.2f} s",
                    "the clip with --int8": f"{results['17x64x64 clip int8']['median_s']:.2f} s",
                    "peak memory": f"{peak_mib:.0f} MiB"}}
    write_json(Path(args.out), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
