"""ShapeWorld render speed: clips/s of 17x64x64 on one core, against the
target of 50 clips/s per core (so rendering never starves training).

    python bench/render_speed.py [--num 400]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy must not fan out
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from sora_hf.shapeworld import STYLES, render_clip  # noqa: E402

TARGET_CLIPS_PER_S = 50.0
CASES = {  # name -> (height, width, frames)
    "17x64x64": (64, 64, 17),
    "17x64x112": (64, 112, 17),
    "65x64x64": (64, 64, 65),
    "33x128x224": (128, 224, 33),
}


def clips_per_second(height, width, frames, num, style=None):
    render_clip(0, height=height, width=width, num_frames=frames)  # warm-up
    start = time.perf_counter()
    for seed in range(num):
        render_clip(seed, height=height, width=width, num_frames=frames, style=style or STYLES[seed % len(STYLES)])
    return num / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=400, help="clips per case")
    parser.add_argument("--out", default="bench/results/render_speed.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # really one core
    results = {}
    for name, (h, w, f) in CASES.items():
        n = args.num if f * h * w <= 65 * 64 * 64 else max(20, args.num // 10)
        results[name] = clips_per_second(h, w, f, n)
    results["17x64x64 style=none"] = clips_per_second(64, 64, 17, args.num, style="none")
    print(f"{'case (mixed styles)':28s} {'clips/s':>9s} {'frames/s':>9s}")
    for name, rate in results.items():
        frames = int(name.split("x")[0])
        print(f"{name:28s} {rate:9.1f} {rate * frames:9.0f}")
    ratio = results["17x64x64"] / TARGET_CLIPS_PER_S
    print(f"17x64x64 on one core vs target {TARGET_CLIPS_PER_S:.0f} clips/s: {ratio:.2f}x "
          f"({'PASS' if ratio >= 1 else 'FAIL'})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"clips_per_s": results, "target_clips_per_s": TARGET_CLIPS_PER_S,
                                          "ratio_vs_target": ratio}, indent=2))


if __name__ == "__main__":
    main()
