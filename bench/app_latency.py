"""The studio's latency and memory: Generate -> playable video, through the real app.

    python bench/app_latency.py [--model pipelines/sora-tiny] [--repeats 5]

Starts `sora-hf app` in a subprocess on a free loopback port (as a Space runs it) and, with
gradio_client, asks /generate for the creation bar's default clip (16:9, ~2 s = 17 frames at
64x112, 20 steps, guidance 4). A run is timed from the request to the returned mp4 decoded on the
client's side (playable), median of --repeats after one warm-up. The peer, measured in the same run,
is the same clip made in-process by the pipeline and written as an mp4: their ratio is what the app
adds (queue, library write, HTTP, file transfer). Memory is the app process's resident set, idle
(after start-up and again after the runs) and its peak while generating, sampled every 20 ms.
Writes bench/results/app_latency.json (its "card" entry is what the model card shows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from app_server import AppServer  # noqa: E402

from sora_hf.training.common import write_json  # noqa: E402
from sora_hf.video_io import read_video, write_video  # noqa: E402

PROMPT = "a red circle bouncing on a sky background"
APP_DEFAULTS = dict(aspect_ratio="16:9", resolution_tier=1, duration="2s", variations=1, randomize_seed=False,
                    steps=20, guidance=4.0, negative_prompt="")
PIPELINE_DEFAULTS = dict(height=64, width=112, num_frames=17, num_inference_steps=20, guidance_scale=4.0)
MIB = 2 ** 20


class PeakRSS:
    """Samples a process's resident set in a thread while the `with` block runs."""

    def __init__(self, pid: int, every_s: float = 0.02):
        self.process, self.every_s, self.peak = psutil.Process(pid), every_s, 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def app_runs(model: str, repeats: int, workdir: Path) -> dict:
    server = AppServer(Path(model).resolve(), workdir / "library", workdir).start()
    try:
        process = psutil.Process(server.process.pid)
        time.sleep(2.0)
        idle_start = process.memory_info().rss
        client = server.client()

        def generate(seed: int) -> float:
            start = time.perf_counter()
            files, _ = client.predict(prompt=PROMPT, seed=seed, **APP_DEFAULTS, api_name="/generate")
            frames = read_video(files[0])  # decoded on the client side: playable
            elapsed = time.perf_counter() - start
            assert frames.shape == (17, 64, 112, 3), frames.shape
            return elapsed

        first = generate(0)  # warm-up: the first request also sets up the queue and the library
        times, peaks = [], []
        for r in range(repeats):
            with PeakRSS(process.pid) as peak:
                times.append(generate(r + 1))
            peaks.append(peak.peak)
        idle_after = process.memory_info().rss
    finally:
        server.stop()
    return {"first_s": round(first, 3), "times_s": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3), "idle_rss_mib": round(idle_start / MIB),
            "idle_after_rss_mib": round(idle_after / MIB), "generating_peak_rss_mib": round(max(peaks) / MIB)}


def pipeline_runs(model: str, repeats: int, workdir: Path) -> dict:
    from sora_hf.pipeline_sora import SoraPipeline

    pipe = SoraPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)

    def generate(seed: int) -> float:
        start = time.perf_counter()
        frames = pipe(PROMPT, generator=torch.Generator().manual_seed(seed), **PIPELINE_DEFAULTS).frames[0]
        write_video(workdir / f"direct_{seed}.mp4", frames)
        return time.perf_counter() - start

    generate(0)
    times = [generate(r + 1) for r in range(repeats)]
    return {"times_s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pipelines/sora-tiny")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/app_latency.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be >= 1")
    torch.set_num_threads(2)  # the app's default on this machine: its torch sees the same cores

    with tempfile.TemporaryDirectory(prefix="sora-hf-app-bench-") as tmp:
        app = app_runs(args.model, args.repeats, Path(tmp))  # first, alone: the bench process is idle meanwhile
        direct = pipeline_runs(args.model, args.repeats, Path(tmp))
    ratio = app["median_s"] / direct["median_s"]
    print(f"Generate -> playable default clip (17x64x112, 20 steps) through the app: median {app['median_s']:.2f} s "
          f"over {args.repeats} (first {app['first_s']:.2f} s)")
    print(f"peer, the pipeline in-process + mp4 write: median {direct['median_s']:.2f} s -> app / pipeline "
          f"{ratio:.2f}x")
    print(f"app memory: idle {app['idle_rss_mib']} MiB at start, {app['idle_after_rss_mib']} MiB after the runs; "
          f"peak while generating {app['generating_peak_rss_mib']} MiB")
    out = {"model": args.model, "repeats": args.repeats, "prompt": PROMPT, "settings": APP_DEFAULTS, "app": app,
           "pipeline": direct, "app_over_pipeline": round(ratio, 3),
           "card": {"studio: Generate to playable default clip": f"{app['median_s']:.2f} s",
                    "studio memory idle / generating": f"{app['idle_after_rss_mib']} / "
                                                       f"{app['generating_peak_rss_mib']} MiB"}}
    write_json(Path(args.out), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
