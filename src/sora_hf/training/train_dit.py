"""`sora-hf train-dit`: train SoraTransformer3DModel with flow matching on ShapeWorld
(or a folder of captioned video), with accelerate.

Every conditioning mode the creative tools need is trained from the first step:
- per-frame noise levels: in `condition_fraction` of the clips some latent frames
  (head, tail, head+tail or random ones) get a capped noise level
  `min(sigma, c)`, with c = 0 (a given, clean frame) half the time and
  c ~ U(0, 1) otherwise, exactly what the pipeline does at inference;
- storyboards: two-segment clips use their per-segment captions, each latent
  frame attending only to its own segment's text;
- classifier-free guidance: `text_dropout` of the clips get the empty prompt;
- any size and duration: mixed aspect ratios and durations (images included)
  packed per batch (Patch n' Pack).
The VAE is frozen; latents are encoded on the fly (ShapeWorld is infinite) or
once into a cache (`latent_cache_clips`, the fast path on a CPU).
The lr warms up, holds, and (with `decay_steps`) cools down linearly to 0 at
the run's end: `steps`, or the step `time_budget_h` will end it at, at the pace
so far; `init_from` continues from saved weights with a fresh optimiser.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .common import (FolderOptions, RunLog, folder_loader, forever, latest_checkpoint, load_checkpoint,
                     mean_over_processes, print_result, provenance, record_command, save_checkpoint,
                     steps_within_budget, synced_wall_time, write_json)


@dataclass
class DiTTrainingConfig(FolderOptions):  # the folder_* options: a --video-folder's files
    # --- model
    preset: str = "sora-tiny"  # SoraTransformer3DModel preset (transformer_sora.PRESETS)
    # spatial patch of latent pixels; 0 keeps init_from's (2 for a fresh model). A finer one than init_from's
    # starts from its weights (SoraTransformer3DModel.with_patch_size). Patch 1 on the shipped DiT: within noise,
    # at twice the sampling time (numbers: model card, "What was tried")
    patch_size: int = 0
    # start from this saved transformer (e.g. pipelines/sora-tiny/transformer) instead of a fresh preset; its
    # provenance is kept inside the new one, so continued training names every run behind the weights
    init_from: str = ""
    # --- data (ShapeWorld unless --video-folder)
    tier: int = 1  # 1: 64 px short side, 2: 128 px
    durations: tuple = (1, 17, 33)  # frames; 1 is an image
    duration_weights: tuple = (0.25, 0.6, 0.15)  # the default clip is 17 frames
    style_weights: tuple = (0.8, 0.05, 0.05, 0.05, 0.05)  # none, stop-motion, neon, pixel, sketch
    storyboard_fraction: float = 0.3
    batch_size: int = 12  # clips per step
    # --- flow matching
    # logit-normal timestep sampling (SD3). 0.8 (more steps at high noise, where layout is decided) on the shipped
    # DiT: no better (numbers: model card, "What was tried")
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # sigma -> shift * sigma / (1 + (shift - 1) * sigma); the pipeline's scheduler uses the same. 3 puts ~1/4 of
    # the steps above sigma 0.85 (1 puts 4%), where layout is decided; sampling the shipped DiT with shift 3 beat
    # shift 1 on 30 eval scenes (long-caption colour 87 vs 83%, short-caption shape 26 vs 17%)
    shift: float = 3.0
    # this fraction of clips draws sigma ~ U(0, 1) instead, since the shifted logit-normal puts <1% of them below
    # sigma 0.2, where the last sampling steps work. 0.5 on the shipped DiT lowers the eval velocity error there;
    # adherence within noise (numbers: model card, "What was tried")
    uniform_fraction: float = 0.0
    # per-channel loss weight latents_std ** (2 * power), normalised to mean 1. 0: every normalised channel alike;
    # 1: MSE in raw latent units, which through a near-linear (PCA-skeleton) decoder is pixel MSE. At 0 the shipped
    # DiT's x0 error at sigma 0.3-0.8 puts 82-89% of the loss on channels 4-15, which make 5-14% of the pixel error,
    # while channel 0 (each 4x8x8 block's mean, std 18) makes 63-80% of it: the visible 8x8 blocks. Power 1 on the
    # shipped DiT: cleaner backgrounds and colour, lower shape and motion, which live partly in the small channels;
    # 0.5 between (numbers: model card, "What was tried")
    channel_weight_power: float = 0.0
    text_dropout: float = 0.1
    condition_fraction: float = 0.3  # clips with clean / low-noise frames
    long_caption_fraction: float = 0.5  # else the short caption
    storyboard_segment_fraction: float = 0.75  # storyboard clips trained with per-segment captions
    # --- optimisation
    steps: int = 3000
    time_budget_h: float = 0.0  # > 0: also stop (and export) once this much wall-clock time has been trained
    # the shipped run's (its recorded command relies on this default). 2e-3 trains stably and learns faster: the
    # full shipped run at 2e-3 ends at a 9.5% lower held-out velocity error (bench/velocity_error.py), though
    # with no better prompt adherence (model card, "What was tried")
    lr: float = 5e-4
    warmup_steps: int = 100
    # > 0: the lr falls linearly to 0 over the last decay_steps before the run ends, by steps or by time budget
    # (warmup-stable-decay); the stable phase has no planned end, so a resumed run can add the cool-down when it
    # knows its length
    decay_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    max_tokens_per_row: int = 640  # Patch n' Pack row length in training
    # recompute each block's activations in the backward pass instead of keeping them, for the S/B/L presets on
    # long clips on GPUs (sora-tiny, 8 clips of 33x64x112 on this CPU: 0.69 vs 0.50 s a step, peak RSS 784 vs
    # 955 MB, of which ~400 MB is the process without activations)
    gradient_checkpointing: bool = False
    # > 0: encode this many clips once and train on them (fast on CPU); 0: on the fly. 4,000 clips (and 12,174
    # steps) instead of the shipped 2,000 (and 9,000): no better (numbers: model card, "What was tried")
    latent_cache_clips: int = 0
    # DataLoader processes that render (ShapeWorld) or decode (--video-folder) clips, per training process; 0: in
    # the training process itself. Each ShapeWorld worker draws its own stream, so the count changes the clips
    num_workers: int = 1
    # --- bookkeeping
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    max_sequence_length: int = 96


# ----------------------------------------------------------------------------
# Per-frame noise: what the creative tools will ask of the model
# ----------------------------------------------------------------------------

FRAME_MODES = ("head", "tail", "head+tail", "random")


def sample_frame_caps(latent_frames: int, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """(F',) noise caps in [0, 1]; 1 means "no cap" (the frame follows the global sigma)."""
    caps = np.ones(latent_frames, dtype=np.float32)
    if latent_frames < 2 or rng.random() >= fraction:
        return caps
    mode = FRAME_MODES[rng.integers(len(FRAME_MODES))]
    k = int(rng.integers(1, max(2, latent_frames // 2) + 1))  # how many frames are given
    chosen = {"head": np.arange(k), "tail": np.arange(latent_frames - k, latent_frames),
              "head+tail": np.r_[np.arange(max(1, k // 2)), np.arange(latent_frames - max(1, k // 2), latent_frames)],
              "random": rng.choice(latent_frames, size=k, replace=False)}[mode]
    level = 0.0 if rng.random() < 0.5 else float(rng.uniform(0, 1))
    caps[np.minimum(chosen, latent_frames - 1)] = level
    return caps


def sample_sigmas(n: int, rng: np.random.Generator, cfg: DiTTrainingConfig) -> torch.Tensor:
    """(n,) clip noise levels: shifted logit-normal (SD3), or U(0, 1) for `uniform_fraction` of the clips."""
    u = torch.sigmoid(torch.from_numpy(rng.normal(cfg.logit_mean, cfg.logit_std, n)).float())
    sigmas = cfg.shift * u / (1 + (cfg.shift - 1) * u)
    if cfg.uniform_fraction > 0:  # no extra draws otherwise: runs without it keep their random stream
        uniform = torch.from_numpy(rng.random(n) < cfg.uniform_fraction)
        sigmas = torch.where(uniform, torch.from_numpy(rng.random(n)).float(), sigmas)
    return sigmas


def latent_frame_segments(segments: list[dict], num_frames: int, latent_frames: int, temporal: int) -> list[int]:
    """The segment of each latent frame: the one covering the last pixel frame it encodes."""
    segment_of = np.zeros(num_frames, dtype=np.int64)
    for s, seg in enumerate(segments):
        segment_of[seg["start"]:seg["end"]] = s
    return [int(segment_of[min(num_frames - 1, j * temporal)]) for j in range(latent_frames)]


def choose_texts(item: dict, rng: np.random.Generator, cfg: DiTTrainingConfig) -> list[str]:
    """The texts a clip is trained with: one per segment (storyboards) or one for the clip."""
    if rng.random() < cfg.text_dropout:
        return [""]
    long = rng.random() < cfg.long_caption_fraction
    if len(item["segments"]) > 1 and rng.random() < cfg.storyboard_segment_fraction:
        return [seg["long" if long else "short"] for seg in item["segments"]]
    return [item["long" if long else "short"]]


# ----------------------------------------------------------------------------
# One training step's inputs
# ----------------------------------------------------------------------------

TEXT_MEMO_SIZE = 8192  # captions BatchMaker keeps encoded when they are drawn from an endless stream


class BatchMaker:
    """Items -> the packed inputs and targets of the flow-matching loss."""

    def __init__(self, pipe, cfg: DiTTrainingConfig, rng: np.random.Generator, device,
                 text_memo_size: Optional[int] = TEXT_MEMO_SIZE):
        self.pipe, self.cfg, self.rng, self.device = pipe, cfg, rng, device
        # caption -> (token states of its real tokens (L, E), pooled (E,)) from the frozen text encoder, least
        # recently used first; None: keep all. Captions repeat (a 2,000-clip latent cache holds ~5,600, each
        # drawn tens of times in a 10k-step run), and encoding them was 13% of a CPU step of the shipped model
        self.text_memo: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.text_memo_size = text_memo_size

    @torch.no_grad()
    def encode_latents(self, items: list[dict]) -> list[torch.Tensor]:
        """Normalised VAE latents (C, F', H', W') of each item; items from the latent cache already have them."""
        from ..data import group_by_shape

        if all("latent" in item for item in items):
            return [item["latent"].to(self.device) for item in items]
        latents: list[Optional[torch.Tensor]] = [None] * len(items)
        for _, indices in group_by_shape(items).items():
            video = torch.stack([items[i]["video"] for i in indices]).to(self.device)  # (n, 3, F, H, W)
            z = self.pipe.encode_video(video)  # (n, C, F', H', W') normalised
            for k, i in enumerate(indices):
                latents[i] = z[k]
        return latents

    @torch.no_grad()
    def encode_texts(self, texts_per_item: list[list[str]]):
        """Each item's segment captions -> its text tokens (L_i, E), pooled (S_i, E) and token segment ids (L_i,);
        only captions missing from `text_memo` go through the text encoder (in one batch)."""
        memo = self.text_memo
        missing = list(dict.fromkeys(t for texts in texts_per_item for t in texts if t not in memo))
        if missing:
            states, mask, pooled = self.pipe.encode_prompt(missing, 1, self.cfg.max_sequence_length, self.device)
            for k, text in enumerate(missing):
                memo[text] = (states[k][mask[k].bool()], pooled[k].clone())
        tokens, pooled_out, text_seg = [], [], []
        for texts in texts_per_item:
            parts = [memo[t][0] for t in texts]
            tokens.append(torch.cat(parts))  # (L_i, E)
            text_seg.append(torch.cat([torch.full((len(p),), s, device=self.device) for s, p in enumerate(parts)]))
            pooled_out.append(torch.stack([memo[t][1] for t in texts]))  # (S_i, E)
            for t in texts:
                memo.move_to_end(t)
        while self.text_memo_size is not None and len(memo) > self.text_memo_size:
            memo.popitem(last=False)
        return tokens, pooled_out, text_seg

    def make(self, items: list[dict]) -> dict:
        cfg, rng = self.cfg, self.rng
        latents = self.encode_latents(items)
        texts = [choose_texts(item, rng, cfg) for item in items]
        tokens, pooled, text_seg = self.encode_texts(texts)
        sigmas = sample_sigmas(len(items), rng, cfg)  # (N,)
        noisy, targets, timesteps, frame_seg, weights = [], [], [], [], []
        temporal = self.pipe.vae_scale_factor_temporal
        for i, (item, z0) in enumerate(zip(items, latents)):
            Fl = z0.shape[1]
            caps = torch.from_numpy(sample_frame_caps(Fl, rng, cfg.condition_fraction)).to(self.device)
            sigma_f = torch.minimum(sigmas[i].to(self.device), caps)  # (F',)
            noise = torch.from_numpy(rng.standard_normal(z0.shape).astype(np.float32)).to(self.device)
            s = sigma_f.view(1, -1, 1, 1)
            noisy.append((1 - s) * z0 + s * noise)
            targets.append(noise - z0)
            timesteps.append(sigma_f * 1000.0)
            segs = latent_frame_segments(item["segments"], item["num_frames"], Fl, temporal) \
                if len(texts[i]) > 1 else [0] * Fl
            frame_seg.append(torch.tensor(segs, device=self.device))
            weights.append((sigma_f > 0).float())  # a given frame's velocity is undefined: no loss there
        return dict(latents=noisy, targets=targets, timesteps=timesteps, tokens=tokens, pooled=pooled,
                    text_seg=text_seg, frame_seg=frame_seg, weights=weights)


def build_latent_cache(maker: BatchMaker, batches, num_clips: int, path: Path, progress: bool = True) -> list[dict]:
    """Encode num_clips training clips once with the frozen VAE and keep what training needs of them.

    On a CPU the VAE encoder costs several DiT steps per batch, and the DiT sees each clip many times
    anyway, so a cache of latents (plus captions and segments) makes every step a DiT step. Saved to
    `path`, so a resumed run reuses it. Each process of a multi-process run caches its own clips; `progress`
    shows the bar (the main process's)."""
    from tqdm.auto import tqdm

    if path.exists():
        return torch.load(path)
    started = time.time()
    cache: list[dict] = []
    with tqdm(total=num_clips, desc="encode latents", unit="clip", disable=not progress) as bar:
        while len(cache) < num_clips:
            items = next(batches)
            for item, z in zip(items, maker.encode_latents(items)):
                cache.append({"latent": z.cpu().clone(), "num_frames": item["video"].shape[1],
                              "short": item["short"], "long": item["long"], "segments": item["segments"]})
            bar.update(len(items))
    tmp = path.with_suffix(".tmp")
    torch.save(cache[:num_clips], tmp)
    tmp.replace(path)
    write_json(path.with_suffix(".json"), {"clips": num_clips, "encode_wall_time_s": round(time.time() - started, 1)})
    return cache[:num_clips]


def sample_cached(cache: list[dict], batch_size: int, rng: np.random.Generator):
    """Endless random batches (with replacement) from the latent cache."""
    while True:
        yield [cache[i] for i in rng.integers(len(cache), size=batch_size)]


def lr_factor(step: int, end_step: int, cfg: DiTTrainingConfig) -> float:
    """Warmup-stable-decay: linear warmup, constant, then (if cfg.decay_steps) linear decay to 0 at end_step,
    the step the run ends at (`steps_within_budget`: cfg.steps, or earlier where the time budget ends it)."""
    warmup = min(1.0, step / max(1, cfg.warmup_steps))
    if cfg.decay_steps <= 0:
        return warmup
    return warmup * min(1.0, max(0.0, (end_step - step) / cfg.decay_steps))


def channel_loss_weights(latents_std, power: float, device=None) -> Optional[torch.Tensor]:
    """(C,) per-channel loss weights latents_std ** (2 * power), mean 1; None where they are all 1 (the loss
    logged is the weighted one, so runs at different powers log different scales)."""
    if power == 0:
        return None
    if not latents_std:
        raise ValueError(f"channel_weight_power={power} weighs channels by the VAE's latents_std, and this VAE's "
                         "config has none: use a VAE trained by `sora-hf train-vae`, or channel_weight_power=0")
    weights = torch.tensor(latents_std, dtype=torch.float32, device=device) ** (2 * power)
    return weights / weights.mean()


def flow_matching_loss(predictions: list[torch.Tensor], batch: dict,
                       channel_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared velocity error over the frames that carry noise, averaged per clip; channel_weights (C,)
    weigh the latent channels (`channel_loss_weights`)."""
    losses = []
    for pred, target, w in zip(predictions, batch["targets"], batch["weights"]):
        squared = (pred - target).square()  # (C, F', H', W')
        if channel_weights is not None:
            squared = squared * channel_weights.view(-1, 1, 1, 1)
        per_frame = squared.mean(dim=(0, 2, 3))  # (F',)
        losses.append((per_frame * w).sum() / w.sum().clamp(min=1))
    return torch.stack(losses).mean()


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------

def train(cfg: DiTTrainingConfig, vae_path: str, out_dir: str, resume: bool = True,
          export: Optional[str] = None, video_folder: Optional[str] = None) -> dict:
    from accelerate import Accelerator
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from ..data import ShapeWorldDataset, ShapeWorldSampling, collate_videos
    from ..models import AutoencoderKLSora, SoraTransformer3DModel
    from ..models.transformer_sora import PRESETS
    from ..pipeline_sora import SoraPipeline, _bundled_text_model

    if cfg.preset not in PRESETS:
        raise ValueError(f"preset={cfg.preset!r}; allowed: {sorted(PRESETS)}")
    accelerator = Accelerator()
    device = accelerator.device
    torch.manual_seed(cfg.seed)
    # read the folder first: a bad folder or batch size fails before the run writes anything
    loader = folder_loader(video_folder, cfg, cfg.seed, cfg.batch_size, accelerator,
                           cfg.num_workers) if video_folder else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    vae = AutoencoderKLSora.from_pretrained(vae_path).to(device).eval().requires_grad_(False)
    channel_weights = channel_loss_weights(vae.config.latents_std, cfg.channel_weight_power, device)
    text_encoder = _bundled_text_model("text_encoder").to(device).eval().requires_grad_(False)
    tokenizer = _bundled_text_model("tokenizer")
    scheduler = FlowMatchEulerDiscreteScheduler(shift=cfg.shift)
    init_record = _init_provenance(cfg.init_from)  # read now: an in-place export overwrites it
    if cfg.init_from:
        model = SoraTransformer3DModel.from_pretrained(cfg.init_from)
        if model.config.in_channels != vae.config.latent_channels:
            raise ValueError(f"init_from={cfg.init_from!r} takes {model.config.in_channels} latent channels; the VAE "
                             f"{vae_path!r} makes {vae.config.latent_channels}")
        if cfg.patch_size and cfg.patch_size != model.config.patch_size:
            model = model.with_patch_size(cfg.patch_size)
        model.register_to_config(max_tokens_per_row=cfg.max_tokens_per_row)  # the packed forward reads it
    else:
        model = SoraTransformer3DModel(in_channels=vae.config.latent_channels, patch_size=cfg.patch_size or 2,
                                       max_tokens_per_row=cfg.max_tokens_per_row, **PRESETS[cfg.preset])
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    pipe = SoraPipeline(transformer=model, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        scheduler=scheduler)
    # fused: one kernel for all parameters (12.6 vs 33 ms a step for sora-tiny's 9.3M on one CPU thread)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99),
                                  fused=True)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, model_cls=SoraTransformer3DModel,
                   model_config=model.config)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(ema)

    log = RunLog(out, writer=accelerator.is_main_process)
    step, wall_before = 0, 0.0
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        step, wall_before = state["step"], state.get("wall_time_s", 0.0)
        log.truncate_after(step)
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    history = []
    if accelerator.is_main_process:
        write_json(out / "config.json", {"training": dataclasses.asdict(cfg), "vae": str(vae_path)})
        history = record_command(out, step)

    if loader is None:  # ShapeWorld
        sampling = ShapeWorldSampling(tier=cfg.tier, durations=cfg.durations, duration_weights=cfg.duration_weights,
                                      style_weights=cfg.style_weights, storyboard_fraction=cfg.storyboard_fraction)
        dataset = ShapeWorldDataset(sampling, seed=cfg.seed, rank=accelerator.process_index,
                                    world_size=accelerator.num_processes)
        dataset.set_epoch(step)  # a resumed run draws fresh clips instead of replaying the first ones
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, collate_fn=collate_videos,
                                             num_workers=cfg.num_workers,
                                             prefetch_factor=2 if cfg.num_workers else None)
    batches = (_with_num_frames(items) for items in forever(loader))
    rng = np.random.default_rng([cfg.seed, step, accelerator.process_index])
    # a latent cache's captions are a closed set (~2.8 a clip, ~50 KB each): keep them all, where an LRU smaller
    # than the set would go on re-encoding a share of them every step
    maker = BatchMaker(pipe, cfg, rng, device, text_memo_size=None if cfg.latent_cache_clips > 0 else TEXT_MEMO_SIZE)
    cache_path = None
    if cfg.latent_cache_clips > 0:
        cache_path = out / f"latents-{cfg.latent_cache_clips}-rank{accelerator.process_index}.pt"
        cache = build_latent_cache(maker, batches, cfg.latent_cache_clips, cache_path,
                                   progress=accelerator.is_main_process)
        batches = sample_cached(cache, cfg.batch_size, rng)

    start = time.time()
    wall = wall_before
    end_step = steps_within_budget(cfg.steps, step, wall, cfg.time_budget_h)  # where the lr's cool-down ends
    bar = tqdm(total=end_step, initial=step, desc="train-dit", unit="step", disable=not accelerator.is_main_process)
    model.train()

    def finished(step_: int, wall_: float) -> bool:  # by steps, or by the wall-clock budget
        return step_ >= cfg.steps or (cfg.time_budget_h > 0 and wall_ >= 3600 * cfg.time_budget_h)

    while not finished(step, wall):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, end_step, cfg)
        batch = maker.make(next(batches))
        out_packed = model(batch["latents"], batch["timesteps"], batch["tokens"], None, batch["pooled"],
                           batch["frame_seg"], batch["text_seg"]).sample
        loss = flow_matching_loss(out_packed, batch, channel_weights)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(model).parameters())
        step += 1
        wall = synced_wall_time(accelerator, wall_before + time.time() - start)
        end_step = bar.total = steps_within_budget(cfg.steps, step, wall, cfg.time_budget_h)
        loss_mean = mean_over_processes(accelerator, loss=loss)["loss"]
        bar.update()
        bar.set_postfix(loss=f"{loss_mean:.4f}")
        if step % cfg.log_every == 0 or finished(step, wall):
            log.write(step, loss=loss_mean, grad_norm=float(grad_norm), lr=optimizer.param_groups[0]["lr"],
                      wall_time_s=round(wall, 1))
        if step % cfg.save_every == 0 or finished(step, wall):
            save_checkpoint(accelerator, out, step, wall_time_s=wall)
            log.plot(out / "loss.png", title=f"train-dit {cfg.preset}")
    bar.close()

    wall = wall_before + time.time() - start
    records = log.records()
    final_loss = float(np.mean([r["loss"] for r in records[-20:]])) if records else float("nan")
    result = {"steps": step, "wall_time_s": round(wall, 1), "final_loss_avg20": round(final_loss, 5)}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        ema.copy_to(final.parameters())  # ship the EMA weights
        final.save_pretrained(out / "transformer")
        scheduler.save_pretrained(out / "scheduler")
        log.plot(out / "loss.png", title=f"train-dit {cfg.preset}")
        if export:  # a data-only pipeline folder: model_index.json, transformer/, vae/, scheduler/
            export_dir = Path(export)
            pipe.transformer = final
            # shards under 20 MB keep every file in git small; diffusers loads them transparently
            pipe.save_pretrained(export_dir, copy_code=False, include_text_encoder=False, max_shard_size="18MB")
            vae_record, exported = Path(vae_path) / "provenance.json", export_dir / "vae" / "provenance.json"
            if vae_record.is_file() and vae_record.resolve() != exported.resolve():  # travels with the weights
                shutil.copyfile(vae_record, exported)
            write_json(export_dir / "transformer" / "provenance.json", provenance(
                steps=step, wall_time_s=round(wall, 1), commands=history, metrics={"final_loss_avg20": final_loss},
                training=dataclasses.asdict(cfg), vae=str(vae_path),
                latent_cache=json.loads(cache_path.with_suffix(".json").read_text()) if cache_path else None,
                data="ShapeWorld v1 (train split)" if not video_folder else f"video folder {video_folder}",
                init_from=init_record))
    return result


def _init_provenance(init_from: str) -> Optional[dict]:
    """Where the starting weights came from: their folder and, if they have one, their provenance.json."""
    if not init_from:
        return None
    record = Path(init_from) / "provenance.json"
    return {"path": init_from, "provenance": json.loads(record.read_text()) if record.is_file() else None}


def _with_num_frames(items: list[dict]) -> list[dict]:
    for item in items:
        item["num_frames"] = item["video"].shape[1]
    return items


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train-dit", help="train the diffusion transformer (flow matching, accelerate)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="folder of the trained AutoencoderKLSora (e.g. pipelines/sora-tiny/vae)")
    p.add_argument("--out", default="runs/dit", help="run folder: checkpoints, log.jsonl, loss.png")
    p.add_argument("--export", default=None,
                   help="also write the whole data-only pipeline folder here (e.g. pipelines/sora-tiny): the EMA "
                        "transformer + provenance.json, the VAE given by --vae, the scheduler, model_index.json")
    p.add_argument("--video-folder", default=None, help="train on a folder of videos + captions.jsonl instead")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run folder has checkpoints")
    add_dataclass_arguments(p, DiTTrainingConfig)
    p.set_defaults(func=_run)


def add_dataclass_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One --flag per config field, typed like its default (tuples take comma-separated values)."""
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(flag, default=default, type=_bool, help=f"default: {default} (true/false)")
        elif isinstance(default, tuple):
            parser.add_argument(flag, default=default, type=_tuple_of(type(default[0])), help=f"default: {default}")
        else:
            parser.add_argument(flag, default=default, type=type(default), help=f"default: {default}")


def config_from_args(config_cls, args: argparse.Namespace):
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"{text!r} must be true or false")
    return text.lower() in ("true", "1", "yes")


def _tuple_of(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated {kind.__name__} values")
    return parse


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(DiTTrainingConfig, args)
    result = train(cfg, args.vae, args.out, resume=not args.no_resume, export=args.export,
                   video_folder=args.video_folder)
    print_result(result)
    return 0
