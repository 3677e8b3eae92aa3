"""DiT speed: per-step latency of SoraTransformer3DModel against diffusers'
WanTransformer3DModel and LTXVideoTransformer3DModel built at the same width,
depth and heads and fed the same number of tokens, in one run; and Patch n'
Pack against padding on a mixed-size batch.

    python bench/dit_speed.py [--preset sora-tiny] [--repeats 20]

Weights are random (speed does not depend on them). The classifier-free
guidance batch (2) of a 17x64x64 clip is the default case: latents
(16, 5, 8, 8) -> 80 tokens per sample with 1x2x2 patches. The models take
turns call by call, so drift on a shared machine hits them alike. Beside the
full step it times our linear layers alone on the same inputs: the matmuls
that any model of this width, depth and token count does, i.e. the floor
that trimming everything else could reach in float32; and ours with the
blocks in int8 (`quantize_int8`, the CPU inference option; the peers stay
float32, so that ratio is the option's, not the architecture's). `--compile`
also times all three under torch.compile (inductor, with weights frozen into
the graph, as for inference), each against the others compiled.
"""

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
from diffusers import LTXVideoTransformer3DModel, WanTransformer3DModel

from sora_hf.models.transformer_sora import PRESETS, SoraTransformer3DModel

TEXT_TOKENS = 24  # a typical caption
TARGET_RATIO = 0.7


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each function, after warm-up. They take turns, one call each per round in
    a rotating order, so the machine's drift during the run (large on a shared 2-core box) hits all alike."""
    names = list(fns)
    times = {name: [] for name in names}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(3):
                fn()
        for round_ in range(repeats):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def build_models(preset: str, channels: int):
    cfg = PRESETS[preset]
    width, depth, heads = cfg["hidden_size"], cfg["num_layers"], cfg["num_attention_heads"]
    ours = SoraTransformer3DModel(in_channels=channels, **cfg).eval()
    wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=width // heads,
                                in_channels=channels, out_channels=channels, text_dim=384, freq_dim=256,
                                ffn_dim=4 * width, num_layers=depth).eval()
    # LTX patchifies outside the model: give it the same tokens as (B, N, C * 2 * 2) with patch 1
    ltx = LTXVideoTransformer3DModel(in_channels=channels * 4, out_channels=channels * 4, patch_size=1,
                                     num_attention_heads=heads, attention_head_dim=width // heads,
                                     cross_attention_dim=width, num_layers=depth, caption_channels=384).eval()
    return ours, wan, ltx


def step_calls(models, latent: tuple, batch: int) -> tuple[dict, tuple]:
    """Random inputs of one guided step and each model's call on them: ({"ours", "wan", "ltx": fn}, the
    arguments ours takes, for its variants). Ours is called as Wan is, with no padding mask (every caption is
    TEXT_TOKENS long), and with the pooled text, as the pipeline gives it."""
    ours, wan, ltx = models
    C, F, H, W = latent
    x = torch.randn(batch, C, F, H, W)
    text = torch.randn(batch, TEXT_TOKENS, 384)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.long)
    t = torch.full((batch,), 500.0)
    tokens = ours.patchify(x)  # (B, N, C*4): identical token count for LTX
    ours_args = (x, t[:, None].expand(-1, F), text, None, text.mean(1))
    calls = {"ours": lambda: ours(*ours_args), "wan": lambda: wan(x, t, text),
             "ltx": lambda: ltx(tokens, text, t, mask, num_frames=F, height=H // 2, width=W // 2)}
    return calls, ours_args


def step_latency(preset: str, latent: tuple, batch: int, repeats: int) -> dict:
    models = build_models(preset, latent[0])
    ours = models[0]
    calls, ours_args = step_calls(models, latent, batch)
    linears = linear_calls(ours, ours_args)
    fused = copy.deepcopy(ours)
    fused.fuse_qkv_projections()  # diffusers' opt-in: one matmul for q, k, v (not with LoRA adapters loaded)
    int8 = copy.deepcopy(ours).quantize_int8()
    results = timed({
        **calls,
        "ours_fused_qkv": lambda: fused(*ours_args),
        # the matmuls every model of this width, depth and token count must do (Wan and LTX do them too): the
        # floor of ours/faster that any eager-mode trimming of the rest could reach
        "ours_linears_only": lambda: [nn.functional.linear(i, w, b) for i, w, b in linears],
        "ours_int8": lambda: int8(*ours_args),
    }, repeats)
    faster = min(results["wan"], results["ltx"])
    results["ratio_vs_faster_peer"] = results["ours"] / faster
    results["fused_ratio_vs_faster_peer"] = results["ours_fused_qkv"] / faster
    results["linears_only_ratio_vs_faster_peer"] = results["ours_linears_only"] / faster
    results["int8_ratio_vs_faster_peer"] = results["ours_int8"] / faster
    results["tokens"] = math.prod(ours.patchify(ours_args[0]).shape[:2])
    return results


def compiled_step_latency(preset: str, latent: tuple, batch: int, repeats: int) -> dict:
    """The three models under torch.compile (inductor, freezing: weights folded into the graph as constants,
    which lets it pre-pack them for the CPU's matmul kernels), on the inputs of `step_latency`."""
    import torch._inductor.config

    models = build_models(preset, latent[0])
    # ours must compile as one graph (tests/test_transformer.py); the peers compile as they can
    compiled = [torch.compile(m, fullgraph=m is models[0]) for m in models]
    calls, _ = step_calls(compiled, latent, batch)
    with torch.no_grad(), torch._inductor.config.patch(freezing=True):
        for fn in calls.values():
            fn()  # compiles
    results = timed(calls, repeats)
    results["ratio_vs_faster_peer"] = results["ours"] / min(results["wan"], results["ltx"])
    return results


def linear_calls(model: nn.Module, inputs: tuple) -> list:
    """(input, weight, bias) of every nn.Linear call in one forward, inputs replaced by random ones of their shape."""
    calls = []
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append((torch.randn(args[0].shape), m.weight, m.bias)))
             for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(*inputs)
    for hook in hooks:
        hook.remove()
    return calls


def packed_vs_padded(preset: str, channels: int, repeats: int) -> dict:
    """Mixed batch: 4 images, 4 clips of 17 frames and 2 of 33 at 64x64 / 64x112 / 112x64."""
    torch.manual_seed(0)
    model = SoraTransformer3DModel(in_channels=channels, **PRESETS[preset]).eval()
    shapes = [(1, 8, 8)] * 2 + [(1, 8, 14)] * 2 + [(5, 8, 8), (5, 14, 8), (5, 8, 14), (5, 8, 8)] + [(9, 8, 14), (9, 8, 8)]
    latents = [torch.randn(channels, *s) for s in shapes]
    texts = [torch.randn(TEXT_TOKENS, 384) for _ in shapes]
    pooled = [t.mean(0) for t in texts]
    steps = [torch.tensor(500.0) for _ in shapes]
    real_tokens = sum(model.patchify(z[None]).shape[1] for z in latents)

    def packed():
        model.forward_packed(latents, steps, texts, pooled, max_tokens_per_row=640)

    Fm, Hm, Wm = (max(s[i] for s in shapes) for i in range(3))
    padded_x = torch.zeros(len(shapes), channels, Fm, Hm, Wm)  # the naive alternative: pad everything to the largest
    padded_text = torch.stack(texts)

    def padded():
        model(padded_x, torch.full((len(shapes),), 500.0), padded_text)

    t_packed, t_padded = timed({"packed": packed, "padded": padded}, repeats).values()
    return {"real_tokens": real_tokens, "packed_tokens_per_s": real_tokens / t_packed,
            "padded_tokens_per_s": real_tokens / t_padded, "packed_speedup": t_padded / t_packed}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sora-tiny", choices=sorted(PRESETS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--latent-channels", type=int, default=16, help="the shipped VAE's latent channels")
    parser.add_argument("--compile", action="store_true", help="also time all three under torch.compile")
    parser.add_argument("--out", default="bench/results/dit_speed.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    C = args.latent_channels
    cases = {"17x64x64 cfg (2x80 tokens)": ((C, 5, 8, 8), 2), "65x64x112 cfg (2x476 tokens)": ((C, 17, 8, 14), 2)}
    results = {"preset": args.preset, "latent_channels": C, "threads": torch.get_num_threads(), "cases": {}}
    print(f"{'case':30s} {'ours ms':>9s} {'fused ms':>9s} {'int8 ms':>9s} {'wan ms':>9s} {'ltx ms':>9s} "
          f"{'ours/faster':>12s} {'fused/faster':>13s} {'linears/faster':>15s} {'int8/faster':>12s}")
    for name, (latent, batch) in cases.items():
        r = step_latency(args.preset, latent, batch, args.repeats)
        results["cases"][name] = r
        print(f"{name:30s} {r['ours'] * 1e3:9.1f} {r['ours_fused_qkv'] * 1e3:9.1f} {r['ours_int8'] * 1e3:9.1f} "
              f"{r['wan'] * 1e3:9.1f} {r['ltx'] * 1e3:9.1f} {r['ratio_vs_faster_peer']:11.2f}x "
              f"{r['fused_ratio_vs_faster_peer']:12.2f}x {r['linears_only_ratio_vs_faster_peer']:14.2f}x "
              f"{r['int8_ratio_vs_faster_peer']:11.2f}x  (target <= {TARGET_RATIO})")
        if args.compile:
            c = r["compiled"] = compiled_step_latency(args.preset, latent, batch, args.repeats)
            print(f"{'  compiled':30s} {c['ours'] * 1e3:9.1f} {'':9s} {'':9s} {c['wan'] * 1e3:9.1f} "
                  f"{c['ltx'] * 1e3:9.1f} {c['ratio_vs_faster_peer']:11.2f}x")
    pack = packed_vs_padded(args.preset, C, max(5, args.repeats // 4))
    results["packing"] = pack
    print(f"mixed batch, {pack['real_tokens']} real tokens: packed {pack['packed_tokens_per_s']:.0f} tok/s, "
          f"padded {pack['padded_tokens_per_s']:.0f} tok/s -> packing {pack['packed_speedup']:.2f}x faster")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
