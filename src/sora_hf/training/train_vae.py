"""`sora-hf train-vae`: train AutoencoderKLSora on ShapeWorld with accelerate.

- Data: the ShapeWorld train stream across every frame size (both tiers, all
  aspect ratios), duration (images included) and style, or a `--video-folder`
  of captioned video (`--folder-size` / `--folder-num-frames` / `--folder-fps`
  first make each file a manageable clip). Each clip is cropped
  to a random window of `crop_frames` frames (any frame can be a first frame)
  and `crop_size` pixels (offsets on the 8 px latent grid), and clips of equal
  shape are batched together, about `pixels_per_step` pixels a batch: a step
  costs about the same whatever the bucket, and the convolutional, causal VAE
  needs no whole clips to learn. Many small crops beat a few big clips: with
  batch 8 x 5 x 32 x 32 a 400-step proxy reached 21.0 dB vs 18.8 dB with
  1 x 5 x 64 x 64 at the same cost (a batch of one background colour makes
  the decoder chase that colour instead of reading it from the latent).
- Loss: L1 reconstruction + `l2_weight` MSE + `grad_weight` L1 of the spatial
  gradients (sharp anti-aliased edges) + `kl_weight` KL to N(0, 1) (per
  element; it only keeps the posterior from drifting). No LPIPS: nothing
  pretrained is available offline, and ShapeWorld is flat colours.
- Init: a new run sets the VAE's linear skeleton to the PCA of `pca_batches`
  training batches (see the model's docstring) and trains it at
  `skeleton_lr_scale` x the learning rate; `--init-from DIR` starts from a saved
  VAE instead, and `--train-encoder false` then fine-tunes the decoder alone,
  which keeps the latents (and a DiT trained on them) valid.
- Decoder noise augmentation (`latent_noise`): the decoder is fed latents with
  Gaussian noise at a random level per clip, in the DiT's normalised units, so
  the small per-latent errors every sampled latent carries decode to clean
  pixels. Without it this small decoder is close to its linear skeleton, which
  turns each latent pixel's error into its own 8x8 block of colour (the blocky
  backgrounds of sampled clips); what it costs and gains is measured beside
  the option.
- Schedule: AdamW, linear warm-up then cosine decay. `time_budget_h` makes the
  run stop, and the cosine end, at a wall-clock budget (progress = the larger
  of step/steps and time/budget), so a run fits its budget on a busy machine.
- EMA weights are what ships. At the end the per-channel latent mean/std of a
  sample of training clips go into the config (`latents_mean`, `latents_std`),
  and the model is saved with `save_pretrained` plus `provenance.json`.
- Resumable: `accelerator.save_state` checkpoints (model, optimiser, EMA, RNGs)
  every `save_every` steps; `--resume` continues from the newest one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .common import (FolderOptions, RunLog, folder_loader, forever, latest_checkpoint, load_checkpoint,
                     mean_over_processes, print_result, provenance, record_command, save_checkpoint,
                     steps_within_budget, synced_wall_time, write_json)
from .train_dit import add_dataclass_arguments, config_from_args

STYLES = ("none", "stop-motion", "neon", "pixel", "sketch")


@dataclass
class VAETrainingConfig(FolderOptions):  # the folder_* options: a --video-folder's files
    # --- model
    preset: str = "sora-tiny"  # autoencoder_kl_sora.PRESETS
    model_overrides: str = ""  # JSON of config overrides, e.g. '{"latent_channels": 8}'
    init_from: str = ""  # start from this saved VAE instead of the preset + PCA skeleton (fine-tuning)
    train_encoder: bool = True  # False: decoder only, so the latents (and a DiT trained on them) stay valid
    # > 0: the decoder sees z + s * eps with s ~ U(0, latent_noise) per clip, in normalised latent units (the
    # DiT's); a decoder-only fine-tune with it keeps the latents. 0.3 on the shipped VAE: sampled backgrounds
    # lose their 8x8 blocks, the objects do not (the blocks on them are the DiT's), and clean reconstructions
    # lose 1.5 dB (numbers: model card, "What was tried")
    latent_noise: float = 0.0
    # --- data: ShapeWorld, all sizes (tier 1 and 2, every aspect ratio), durations and styles
    tier2_fraction: float = 0.3  # share of clips at the 128 px tier
    durations: tuple = (1, 17, 33, 65)  # frames; 1 is an image
    duration_weights: tuple = (0.15, 0.4, 0.3, 0.15)
    style_weights: tuple = (0.4, 0.15, 0.15, 0.15, 0.15)  # none, stop-motion, neon, pixel, sketch
    crop_frames: tuple = (5, 9, 17)  # window lengths (1 + 4k), one drawn per clip among those it can hold
    crop_size: int = 48  # spatial crop (pixels, a multiple of 8) of larger frames
    pixels_per_step: int = 8 * 9 * 48 * 48  # frames x height x width per batch
    max_batch: int = 16
    # --- optimisation
    steps: int = 6000
    time_budget_h: float = 0.0  # > 0: stop (and end the cosine) at this wall-clock budget
    lr: float = 5e-4
    skeleton_lr_scale: float = 0.1  # the PCA skeleton is already good: smaller steps keep it so
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # --- loss
    l2_weight: float = 0.0
    grad_weight: float = 0.0
    kl_weight: float = 1e-6
    # --- bookkeeping
    seed: int = 0
    num_threads: int = 0  # torch threads; 0 keeps torch's default
    log_every: int = 10
    eval_every: int = 250
    save_every: int = 250
    stats_clips: int = 48  # training clips whose latents set latents_mean / latents_std
    pca_batches: int = 48  # training batches whose pixel blocks set the linear skeleton (PCA) of a new run


# ----------------------------------------------------------------------------
# Data: crop, bucket by shape, batch
# ----------------------------------------------------------------------------

def sampling_for(cfg: VAETrainingConfig):
    from ..data import ShapeWorldSampling
    from ..shapeworld import ASPECT_RATIOS

    base = list(ASPECT_RATIOS.values())
    sizes = base + [(2 * h, 2 * w) for h, w in base]
    t2 = cfg.tier2_fraction
    weights = [(1 - t2) / len(base)] * len(base) + [t2 / len(base)] * len(base)
    return ShapeWorldSampling(sizes=sizes, size_weights=weights, durations=cfg.durations,
                              duration_weights=cfg.duration_weights, style_weights=cfg.style_weights)


def random_crop(video: torch.Tensor, crop_frames: tuple, max_size: int, rng: np.random.Generator) -> torch.Tensor:
    """(3, F, H, W) -> (3, F', H', W'): a window of one of crop_frames (that fits; images stay images),
    spatial offsets on the 8 px grid."""
    _, n, h, w = video.shape
    fits = [f for f in crop_frames if f <= n]
    f = int(rng.choice(fits)) if fits else n
    t0 = int(rng.integers(0, n - f + 1))
    ch, cw = min(h, max_size), min(w, max_size)
    y0 = 8 * int(rng.integers(0, (h - ch) // 8 + 1))
    x0 = 8 * int(rng.integers(0, (w - cw) // 8 + 1))
    return video[:, t0:t0 + f, y0:y0 + ch, x0:x0 + cw]


def shape_batches(items: Iterator[dict], cfg: VAETrainingConfig, rng: np.random.Generator) -> Iterator[torch.Tensor]:
    """Crop each item and yield (B, 3, F, H, W) batches of one shape, ~pixels_per_step pixels each."""
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for item in items:
        video = random_crop(item["video"], cfg.crop_frames, cfg.crop_size, rng)
        shape = tuple(video.shape)
        bucket = buckets.setdefault(shape, [])
        bucket.append(video)
        size = max(1, min(cfg.max_batch, cfg.pixels_per_step // math.prod(shape[1:])))
        if len(bucket) >= size:
            yield torch.stack(bucket)  # (B, 3, F, H, W)
            bucket.clear()


def eval_clips(n_per_style: int = 2, seed_offset: int = 0) -> list[tuple[str, torch.Tensor]]:
    """A fixed eval-split set: per style, n 17-frame 64x64 clips and one 64x64 image; (label, (1, 3, F, H, W))."""
    from ..data import frames_to_video
    from ..shapeworld import EVAL_SEED_START, render_clip

    out, seed = [], EVAL_SEED_START + 1_000_000 + seed_offset
    for style in STYLES:
        for _ in range(n_per_style):
            out.append((style, frames_to_video(render_clip(seed, "eval", num_frames=17, style=style).frames)[None]))
            seed += 1
        out.append(("image", frames_to_video(render_clip(seed, "eval", num_frames=1, style=style).frames)[None]))
        seed += 1
    return out


# ----------------------------------------------------------------------------
# Metrics (shared with bench/vae_reconstruction.py)
# ----------------------------------------------------------------------------

def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> what a video file holds: rounded 0..255 (as float)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR (dB) of two clips in [-1, 1], measured on their uint8 versions (peak 255)."""
    mse = (to_uint8(x) - to_uint8(y)).square().mean().item()
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, per channel and frame) of two (B, 3, F, H, W) clips in [-1, 1]."""
    a, b = to_uint8(x), to_uint8(y)
    B, C, Fr, H, W = a.shape
    a = a.transpose(1, 2).reshape(B * Fr * C, 1, H, W)  # (B*F*3, 1, H, W)
    b = b.transpose(1, 2).reshape(B * Fr * C, 1, H, W)
    g = torch.exp(-(torch.arange(11, dtype=torch.float32) - 5) ** 2 / (2 * 1.5**2))
    g = g / g.sum()
    blur = lambda t: F.conv2d(F.conv2d(t, g.view(1, 1, 1, 11)), g.view(1, 1, 11, 1))  # noqa: E731 valid window
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


def add_latent_noise(vae, z: torch.Tensor, levels: torch.Tensor, generator: Optional[torch.Generator] = None
                     ) -> torch.Tensor:
    """(B, C, F', h, w) VAE latents plus Gaussian noise of std `levels` ((B,), one per clip) in the
    normalised units the DiT samples in."""
    eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    return vae.denormalize_latents(vae.normalize_latents(z) + levels.view(-1, 1, 1, 1, 1) * eps)


@torch.no_grad()
def evaluate(vae, clips: list[tuple[str, torch.Tensor]], noisy_level: float = 0.1) -> dict:
    """Mean PSNR / SSIM per label (style or 'image') and over all clips, with the posterior mode; plus
    `psnr_noisy`: the mean PSNR when the latents carry noise of std `noisy_level` (normalised units, a fixed
    seed), which is how robust decoding a sampled latent is."""
    per: dict[str, list[tuple[float, float]]] = {}
    noisy = []
    generator = torch.Generator().manual_seed(0)
    for label, x in clips:
        z = vae.encode(x).latent_dist.mode()
        x_hat = vae.decode(z).sample
        per.setdefault(label, []).append((psnr(x_hat, x), ssim(x_hat, x)))
        levels = torch.full((z.shape[0],), noisy_level)
        noisy.append(psnr(vae.decode(add_latent_noise(vae, z, levels, generator)).sample, x))
    out = {f"psnr_{k}": float(np.mean([p for p, _ in v])) for k, v in per.items()}
    out.update({f"ssim_{k}": float(np.mean([s for _, s in v])) for k, v in per.items()})
    every = [m for v in per.values() for m in v]
    out["psnr"], out["ssim"] = float(np.mean([p for p, _ in every])), float(np.mean([s for _, s in every]))
    out["psnr_noisy"] = float(np.mean(noisy))
    return {k: round(v, 4) for k, v in out.items()}


# ----------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------

class TrainStep(torch.nn.Module):
    """encode -> sample -> decode in one forward, so accelerate/DDP sees a single module call."""

    def __init__(self, vae, latent_noise: float = 0.0):
        super().__init__()
        self.vae = vae
        self.latent_noise = latent_noise

    def forward(self, x: torch.Tensor):
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample()
        if self.latent_noise > 0:
            z = add_latent_noise(self.vae, z, torch.rand(z.shape[0], device=z.device) * self.latent_noise)
        return self.vae.decode(z).sample, posterior.mean, posterior.logvar


def vae_loss(x_hat, x, mean, logvar, cfg: VAETrainingConfig) -> tuple[torch.Tensor, dict]:
    err = x_hat - x  # (B, 3, F, H, W)
    l1 = err.abs().mean()
    loss = l1
    parts = {"l1": l1.item()}
    if cfg.l2_weight:
        l2 = err.square().mean()
        loss = loss + cfg.l2_weight * l2
        parts["l2"] = l2.item()
    if cfg.grad_weight:
        gy = (err[..., 1:, :] - err[..., :-1, :]).abs().mean()  # error in vertical gradients
        gx = (err[..., 1:] - err[..., :-1]).abs().mean()
        loss = loss + cfg.grad_weight * (gx + gy)
        parts["grad"] = (gx + gy).item()
    kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()
    loss = loss + cfg.kl_weight * kl
    parts["kl"] = kl.item()
    return loss, parts


def lr_factor(progress: float, step: int, cfg: VAETrainingConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


@torch.no_grad()
def latent_statistics(vae, batches: Iterator[torch.Tensor], n_clips: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior mode over n_clips training clips."""
    total, total_sq, count, seen = 0.0, 0.0, 0, 0
    while seen < n_clips:
        x = next(batches)
        z = vae.encode(x).latent_dist.mode().double()  # (B, C, F', h, w)
        total = total + z.sum(dim=(0, 2, 3, 4))
        total_sq = total_sq + z.square().sum(dim=(0, 2, 3, 4))
        count += z.numel() // z.shape[1]
        seen += x.shape[0]
    mean = total / count
    # per channel: the skeleton's principal components span a 100:1 range of scales, and with one shared
    # scale the small ones only emerge in the last sampling step (visible 8x8 block noise at 600 DiT steps);
    # unit variance per channel gives every channel the same signal-to-noise schedule
    std = (total_sq / count - mean.square()).clamp(min=1e-12).sqrt()
    return [round(v, 5) for v in mean.tolist()], [round(v, 5) for v in std.tolist()]


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------

def build_vae(cfg: VAETrainingConfig):
    from ..models.autoencoder_kl_sora import AutoencoderKLSora

    overrides = json.loads(cfg.model_overrides) if cfg.model_overrides else {}
    if not isinstance(overrides, dict):
        raise ValueError(f"model_overrides={cfg.model_overrides!r} must be a JSON object of config values")
    return AutoencoderKLSora.from_preset(cfg.preset, **overrides)


def train(cfg: VAETrainingConfig, out_dir: str, resume: Optional[str] = None, export: Optional[str] = None,
          video_folder: Optional[str] = None) -> dict:
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from ..data import ShapeWorldDataset, collate_videos
    from ..models.autoencoder_kl_sora import AutoencoderKLSora

    if any(f < 1 or (f - 1) % 4 for f in cfg.crop_frames):
        raise ValueError(f"crop_frames={cfg.crop_frames} must all be 1 + 4k (1, 5, 9, 13, 17, ...)")
    if cfg.crop_size % 8 or cfg.crop_size < 8:
        raise ValueError(f"crop_size={cfg.crop_size} must be a positive multiple of 8")
    if cfg.latent_noise < 0:
        raise ValueError(f"latent_noise={cfg.latent_noise} must be >= 0 (0 switches the augmentation off)")
    if cfg.latent_noise > 0 and cfg.train_encoder:
        raise ValueError(f"latent_noise={cfg.latent_noise} needs train_encoder=False: its noise is in the units "
                         "of the saved latent statistics, which a trained encoder would change")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    out = Path(out_dir)
    checkpoint = None
    if resume is not None:
        checkpoint = latest_checkpoint(out) if resume == "latest" else Path(resume)
        if checkpoint is None or not (checkpoint / "state.json").exists():
            raise ValueError(f"--resume={resume!r}: no finished checkpoint found"
                             f"{' in ' + str(out) if resume == 'latest' else ''}")
    elif latest_checkpoint(out) is not None:
        raise ValueError(f"--out={str(out)!r} already holds checkpoints; pass --resume to continue that run "
                         f"or choose a new --out")
    accelerator = Accelerator()
    # read the folder first: a bad folder fails before the run writes anything
    loader = folder_loader(video_folder, cfg, cfg.seed, 1, accelerator, num_workers=1) if video_folder else None
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    step = int(json.loads((checkpoint / "state.json").read_text())["step"]) if checkpoint is not None else 0
    if loader is None:  # ShapeWorld
        dataset = ShapeWorldDataset(sampling_for(cfg), seed=cfg.seed, rank=accelerator.process_index,
                                    world_size=accelerator.num_processes)
        dataset.set_epoch(step)  # a resumed run draws fresh clips instead of replaying the first ones
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=collate_videos, num_workers=1,
                                             prefetch_factor=4)
    rng = np.random.default_rng([cfg.seed, step, accelerator.process_index])
    batches = shape_batches((items[0] for items in forever(loader)), cfg, rng)

    if cfg.init_from and cfg.model_overrides:
        raise ValueError(f"init_from={cfg.init_from!r} loads a saved VAE with its own config; model_overrides="
                         f"{cfg.model_overrides!r} cannot change it (give one of the two)")
    vae = AutoencoderKLSora.from_pretrained(cfg.init_from) if cfg.init_from else build_vae(cfg)
    if checkpoint is None and not cfg.init_from:  # a resumed run loads its skeleton with the rest
        kept = vae.init_skeleton_from_pca([next(batches) for _ in range(cfg.pca_batches)])
        accelerator.print(f"linear skeleton from the PCA of {cfg.pca_batches} batches: {kept:.2%} of the variance")
    if cfg.latent_noise > 0 and not vae.config.latents_std:
        raise ValueError(f"latent_noise={cfg.latent_noise} needs a VAE with latents_std in its config "
                         "(--init-from a trained, exported VAE)")
    vae.encoder.requires_grad_(cfg.train_encoder)
    step_module = TrainStep(vae, cfg.latent_noise)
    trained = [(n, p) for n, p in vae.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in trained if "patch_proj" not in n], "lr_scale": 1.0},
              {"params": [p for n, p in trained if "patch_proj" in n], "lr_scale": cfg.skeleton_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99), fused=True)
    ema = EMAModel(vae.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, model_cls=AutoencoderKLSora,
                   model_config=vae.config)
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    accelerator.register_for_checkpointing(ema)

    log = RunLog(out, writer=accelerator.is_main_process)
    step, wall_before = 0, 0.0
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        step, wall_before = state["step"], state.get("wall_time_s", 0.0)
        log.truncate_after(step)
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    history = []
    if accelerator.is_main_process:
        write_json(out / "config.json", {"training": dataclasses.asdict(cfg), "model": dict(vae.config)})
        history = record_command(out, step)

    clips = eval_clips()

    def progress_of(step_: int, wall_: float) -> float:
        by_time = wall_ / (3600 * cfg.time_budget_h) if cfg.time_budget_h > 0 else 0.0
        return max(step_ / cfg.steps, by_time)

    def run_eval() -> dict:
        unwrapped = accelerator.unwrap_model(step_module).vae
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        metrics = evaluate(unwrapped, clips)
        unwrapped.train()
        ema.restore(unwrapped.parameters())
        return metrics

    start = time.time()
    wall = wall_before
    bar = tqdm(total=cfg.steps, initial=step, desc="train-vae", unit="step", disable=not accelerator.is_main_process)
    step_module.train()
    while progress_of(step, wall) < 1.0:
        x = next(batches).to(accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * group["lr_scale"] * lr_factor(progress_of(step, wall), step, cfg)
        x_hat, mean, logvar = step_module(x)
        loss, parts = vae_loss(x_hat, x, mean, logvar, cfg)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(step_module.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(step_module).vae.parameters())
        step += 1
        wall = synced_wall_time(accelerator, wall_before + time.time() - start)
        bar.total = steps_within_budget(cfg.steps, step, wall, cfg.time_budget_h)
        losses = mean_over_processes(accelerator, loss=loss, **parts)
        bar.update()
        bar.set_postfix(loss=f"{losses['loss']:.4f}", shape="x".join(map(str, x.shape[:1] + x.shape[2:])))
        if step % cfg.log_every == 0:
            log.write(step, **losses, grad_norm=float(grad_norm), lr=optimizer.param_groups[0]["lr"],
                      batch="x".join(map(str, x.shape[:1] + x.shape[2:])), wall_time_s=round(wall, 1))
        if step % cfg.eval_every == 0:
            metrics = run_eval()
            log.write(step, **{f"eval_{k}": v for k, v in metrics.items()}, wall_time_s=round(wall, 1))
            bar.write(f"step {step}: eval PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, with latent noise "
                      f"0.1 {metrics['psnr_noisy']:.2f} dB (EMA weights)")
        if step % cfg.save_every == 0:
            save_checkpoint(accelerator, out, step, wall_time_s=wall)
            log.plot(out / "loss.png", keys=("loss", "l1"), title=f"train-vae {cfg.preset}")
    bar.close()
    if step % cfg.save_every:
        save_checkpoint(accelerator, out, step, wall_time_s=wall)

    metrics = run_eval()
    log.write(step, **{f"eval_{k}": v for k, v in metrics.items()}, wall_time_s=round(wall, 1))
    result = {"steps": step, "wall_time_s": round(wall, 1), "eval": metrics}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(step_module).vae
        ema.copy_to(final.parameters())  # ship the EMA weights
        final.eval()
        if cfg.train_encoder:  # else the latents, their statistics and a DiT trained on them stay as they were
            mean, std = latent_statistics(final, batches, cfg.stats_clips)
            final.register_to_config(latents_mean=mean, latents_std=std)
        log.plot(out / "loss.png", keys=("loss", "l1"), title=f"train-vae {cfg.preset}")
        for target in [out / "vae"] + ([Path(export)] if export else []):
            final.save_pretrained(target)
            write_json(target / "provenance.json", provenance(
                steps=step, wall_time_s=round(wall, 1), commands=history, metrics={"eval_fixed_set": metrics},
                latents={"mean": final.config.latents_mean, "std": final.config.latents_std},
                training=dataclasses.asdict(cfg), run_dir=str(out),
                data=f"video folder {video_folder}" if video_folder else
                "ShapeWorld v1, train split (all tiers, aspect ratios, durations, styles)"))
        result["saved"] = [str(out / "vae")] + ([export] if export else [])
    return result


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train-vae", help="train the causal 3-D VAE on ShapeWorld (accelerate)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/vae", help="run folder: checkpoints, log.jsonl, loss.png, vae/")
    p.add_argument("--export", default=None,
                   help="also write the EMA model + provenance.json here (e.g. pipelines/sora-tiny/vae)")
    p.add_argument("--video-folder", default=None,
                   help="train on a folder of videos + captions.jsonl instead of ShapeWorld (see --folder-*); the "
                        "eval set stays ShapeWorld's fixed clips")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from the newest checkpoint in --out (or from the checkpoint folder given)")
    add_dataclass_arguments(p, VAETrainingConfig)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(VAETrainingConfig, args)
    result = train(cfg, args.out, resume=args.resume, export=args.export, video_folder=args.video_folder)
    print_result(result)
    return 0


if __name__ == "__main__":  # python -m sora_hf.training.train_vae ...
    parser = argparse.ArgumentParser(prog="train-vae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["train-vae", *sys.argv[1:]])
    sys.exit(ns.func(ns))
