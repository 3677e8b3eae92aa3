"""Speed and memory of AutoencoderKLSora, and its throughput against diffusers'
AutoencoderKLWan built with matched channel widths, measured in the same run.

    python bench/vae_speed.py [--model pipelines/sora-tiny/vae] [--threads 2]

1. encode / decode time (median of --repeats, after a warm-up) for 17x64x64
   and 65x224x128 (frames x width x height), ours and Wan's interleaved so a
   busy machine slows both alike; throughput ratio = Wan time / our time.
2. peak memory of encode+decode with and without `enable_tiling()` as clips
   grow (17, 33, 65, 129 frames at 128x128, plus 65 frames at 256x448 where
   spatial tiles engage): each measurement in a fresh subprocess that samples
   its resident set size every 2 ms; reported as the peak above the RSS just
   before the call (model and input already allocated).
Random weights by default (speed does not depend on them). Writes
bench/results/vae_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from sora_hf.models.autoencoder_kl_sora import AutoencoderKLSora

TIMING_SHAPES = [(17, 64, 64), (65, 128, 224)]  # (frames, height, width)
MEMORY_SHAPES = [(17, 128, 128), (33, 128, 128), (65, 128, 128), (129, 128, 128), (65, 256, 448)]


def load_ours(model: str | None) -> AutoencoderKLSora:
    if model:
        return AutoencoderKLSora.from_pretrained(model).eval()
    torch.manual_seed(0)
    return AutoencoderKLSora.from_preset("sora-tiny").eval()


def matched_wan(vae: AutoencoderKLSora):
    """AutoencoderKLWan with our stage widths, patch size, depth, latent channels and compression."""
    from diffusers import AutoencoderKLWan

    cfg = vae.config
    widths = list(cfg.block_out_channels)
    # Wan's stage i runs at base * dim_mult[i] and its last stage has no downsample; ours keeps the last width
    # after the last downsample (the middle block), so Wan gets one more stage at that width
    dim_mult = [w // widths[0] for w in widths] + [widths[-1] // widths[0]]
    p = cfg.patch_size
    return AutoencoderKLWan(base_dim=widths[0], dim_mult=dim_mult, z_dim=cfg.latent_channels,
                            num_res_blocks=cfg.layers_per_block, temperal_downsample=list(cfg.temporal_downsample),
                            is_residual=True, in_channels=3 * p * p, out_channels=3 * p * p,
                            patch_size=p if p > 1 else None,
                            scale_factor_spatial=vae.spatial_compression_ratio,
                            scale_factor_temporal=vae.temporal_compression_ratio).eval()


@torch.no_grad()
def time_once(model, x) -> tuple[float, float]:
    t0 = time.perf_counter()
    z = model.encode(x).latent_dist.mode()
    t1 = time.perf_counter()
    model.decode(z)
    return t1 - t0, time.perf_counter() - t1


def timing(vae, wan, repeats: int) -> list[dict]:
    rows = []
    for frames, h, w in TIMING_SHAPES:
        x = torch.rand(1, 3, frames, h, w) * 2 - 1
        n = repeats if frames * h * w <= 17 * 64 * 64 else max(2, repeats // 2)
        time_once(vae, x)  # warm-up
        if wan is not None:
            time_once(wan, x)
        ours, theirs = [], []
        for _ in range(n):  # interleaved: load on a shared machine hits both alike
            ours.append(time_once(vae, x))
            if wan is not None:
                theirs.append(time_once(wan, x))
        row = {"shape": f"{frames}x{w}x{h} (frames x width x height)", "repeats": n,
               "ours_encode_s": round(statistics.median(e for e, _ in ours), 4),
               "ours_decode_s": round(statistics.median(d for _, d in ours), 4),
               "ours_total_s": round(statistics.median(e + d for e, d in ours), 4)}
        if wan is not None:
            row.update({"wan_encode_s": round(statistics.median(e for e, _ in theirs), 4),
                        "wan_decode_s": round(statistics.median(d for _, d in theirs), 4),
                        "wan_total_s": round(statistics.median(e + d for e, d in theirs), 4)})
            row["throughput_ratio_vs_wan"] = round(row["wan_total_s"] / row["ours_total_s"], 2)
            row["decode_throughput_ratio_vs_wan"] = round(row["wan_decode_s"] / row["ours_decode_s"], 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------
# Memory: one subprocess per measurement
# ----------------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(model: str | None, frames: int, h: int, w: int, tiling: bool) -> None:
    vae = load_ours(model)
    if tiling:
        vae.enable_tiling()
    x = torch.rand(1, 3, frames, h, w) * 2 - 1
    with torch.no_grad():  # warm small pass so one-time allocations are not counted
        vae.decode(vae.encode(x[:, :, :1, :64, :64]).latent_dist.mode())
    base, peak, running = _rss_mb(), [0.0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t = time.perf_counter()
    with torch.no_grad():
        vae.decode(vae.encode(x).latent_dist.mode())
    seconds = time.perf_counter() - t
    running[0] = False
    thread.join()
    print(json.dumps({"peak_above_baseline_mb": round(max(peak[0], _rss_mb()) - base, 1),
                      "baseline_mb": round(base, 1), "seconds": round(seconds, 3)}))


def memory(model: str | None, threads: int) -> list[dict]:
    rows = []
    for frames, h, w in MEMORY_SHAPES:
        row = {"shape": f"{frames}x{w}x{h} (frames x width x height)"}
        for tiling in (False, True):
            cmd = [sys.executable, __file__, "--child", f"{frames},{h},{w},{int(tiling)}", "--threads", str(threads)]
            if model:
                cmd += ["--model", model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            key = "tiled" if tiling else "untiled"
            row[f"{key}_peak_mb"] = r["peak_above_baseline_mb"]
            row[f"{key}_seconds"] = r["seconds"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a save_pretrained folder; default: random sora-tiny weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-wan", action="store_true", help="skip the AutoencoderKLWan comparison")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", default="bench/results/vae_speed.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        frames, h, w, tiling = (int(v) for v in args.child.split(","))
        child(args.model, frames, h, w, bool(tiling))
        return 0

    vae = load_ours(args.model)
    wan = None if args.no_wan else matched_wan(vae)
    result = {
        "model": args.model or "sora-tiny preset, random weights",
        "config": {k: v for k, v in vae.config.items() if not k.startswith("_") and k not in ("latents_mean", "latents_std")},
        "params_m": round(sum(p.numel() for p in vae.parameters()) / 1e6, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads, fp32",
        "load_average_at_start": os.getloadavg()[0],
    }
    if wan is not None:
        result["wan"] = {"config": {k: wan.config[k] for k in ("base_dim", "dim_mult", "z_dim", "num_res_blocks",
                                                              "temperal_downsample", "is_residual", "patch_size")},
                         "params_m": round(sum(p.numel() for p in wan.parameters()) / 1e6, 3)}
    result["timing"] = timing(vae, wan, args.repeats)
    if not args.no_memory:
        result["memory"] = memory(args.model, args.threads)
    result["load_average_at_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
