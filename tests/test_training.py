"""The trainers end to end on tiny configs: a few real steps, checkpoints, resume, export, and the
VAE's decoder-only fine-tuning that keeps a DiT's latents valid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sora_hf.models.autoencoder_kl_sora import AutoencoderKLSora
from sora_hf.pipeline_sora import SoraPipeline
from sora_hf.training.train_dit import (BatchMaker, DiTTrainingConfig, channel_loss_weights, flow_matching_loss,
                                        lr_factor, sample_sigmas)
from sora_hf.training.train_dit import train as train_dit
from sora_hf.training.train_vae import VAETrainingConfig
from sora_hf.training.train_vae import train as train_vae

TINY_VAE = dict(preset="tiny-test", pixels_per_step=4 * 5 * 32 * 32, crop_size=32, durations=(1, 17),
                duration_weights=(0.5, 0.5), tier2_fraction=0.0, pca_batches=2, stats_clips=2, eval_every=1000,
                save_every=2, log_every=1, warmup_steps=1)


def weights(folder, prefix):
    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    return {k: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae-run")
    result = train_vae(VAETrainingConfig(steps=3, **TINY_VAE), str(out), export=str(out / "export"))
    return out, result


def test_train_vae_writes_model_log_and_provenance(vae_run):
    out, result = vae_run
    assert result["steps"] == 3 and result["eval"]["psnr"] > 10
    vae = AutoencoderKLSora.from_pretrained(out / "export")
    assert len(vae.config.latents_mean) == len(vae.config.latents_std) == vae.config.latent_channels
    assert all(s > 0 for s in vae.config.latents_std)
    prov = json.loads((out / "export" / "provenance.json").read_text())
    assert prov["steps"] == 3 and prov["training"]["preset"] == "tiny-test" and "command" in prov
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert (out / "loss.png").exists() and (out / "checkpoint-3" / "state.json").exists()


def test_train_vae_resumes_and_refuses_to_overwrite(vae_run):
    out, _ = vae_run
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_vae(VAETrainingConfig(steps=5, **TINY_VAE), str(out))
    result = train_vae(VAETrainingConfig(steps=5, **TINY_VAE), str(out), resume="latest")
    assert result["steps"] == 5
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    history = json.loads((out / "vae" / "provenance.json").read_text())["commands"]
    assert [h["from_step"] for h in history] == [0, 3]  # the provenance of a resumed run names both commands
    assert all(h["git_commit"] for h in history)  # and the code each one ran


def test_decoder_only_finetune_keeps_the_latents(vae_run, tmp_path):
    out, _ = vae_run
    cfg = VAETrainingConfig(steps=2, init_from=str(out / "export"), train_encoder=False, latent_noise=0.3,
                            **TINY_VAE)
    result = train_vae(cfg, str(tmp_path / "ft"))
    assert result["eval"]["psnr_noisy"] < result["eval"]["psnr"]  # noisy latents decode worse than clean ones
    before, after = out / "export", tmp_path / "ft" / "vae"
    for name, tensor in weights(before, "encoder.").items():
        assert torch.equal(weights(after, "encoder.")[name], tensor), name
    assert any(not torch.equal(weights(after, "decoder.")[k], v) for k, v in weights(before, "decoder.").items())
    # the normalisation a DiT was trained with is kept too (recomputing it on other clips would shift it)
    config = lambda folder: json.loads((folder / "config.json").read_text())  # noqa: E731
    for key in ("latents_mean", "latents_std"):
        assert config(after)[key] == config(before)[key], key


def test_latent_noise_is_in_the_dits_units_and_needs_a_frozen_encoder(vae_run, tmp_path):
    from sora_hf.training.train_vae import TrainStep, add_latent_noise

    out, _ = vae_run
    vae = AutoencoderKLSora.from_pretrained(out / "export")
    z = vae.denormalize_latents(torch.randn(3, vae.config.latent_channels, 2, 8, 8))
    noisy = add_latent_noise(vae, z, torch.tensor([0.0, 0.1, 0.5]), torch.Generator().manual_seed(0))
    added = vae.normalize_latents(noisy) - vae.normalize_latents(z)  # what the DiT would see
    assert torch.allclose(added[0], torch.zeros_like(added[0]), atol=1e-5)
    assert abs(added[1].std().item() - 0.1) < 0.02 and abs(added[2].std().item() - 0.5) < 0.1
    # the training step decodes noised latents only when asked to
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    decoded = {}
    for level in (0.0, 1.0):
        torch.manual_seed(0)
        decoded[level] = TrainStep(vae, latent_noise=level)(x)[0]
    torch.manual_seed(0)
    assert torch.equal(TrainStep(vae)(x)[0], decoded[0.0])
    assert (decoded[1.0] - decoded[0.0]).abs().mean() > 0.01
    for kwargs, match in ((dict(latent_noise=0.3), "latent_noise=0.3 needs train_encoder=False"),
                          (dict(latent_noise=-1.0, train_encoder=False), "latent_noise=-1.0 must be >= 0")):
        with pytest.raises(ValueError, match=match):
            train_vae(VAETrainingConfig(steps=1, init_from=str(out / "export"), **kwargs, **TINY_VAE),
                      str(tmp_path / "refused"))
        assert not (tmp_path / "refused").exists()  # refused before anything is written


def test_pca_skeleton_is_a_good_linear_autoencoder():
    """A fresh model is its linear skeleton; fitted by PCA it already reconstructs ShapeWorld well."""
    from sora_hf.data import frames_to_video
    from sora_hf.shapeworld import render_clip
    from sora_hf.training.train_vae import psnr

    clips = [frames_to_video(render_clip(seed, "train", num_frames=9, height=32, width=32).frames)[None]
             for seed in range(12)]
    torch.manual_seed(0)
    vae = AutoencoderKLSora.from_preset("tiny-test", latent_channels=16).eval()
    held_out = torch.cat(clips[10:])
    with torch.no_grad():
        random_psnr = psnr(vae(held_out).sample, held_out)
        kept = vae.init_skeleton_from_pca(clips[:10])
        fitted_psnr = psnr(vae(held_out).sample, held_out)
    assert 0.9 < kept <= 1.0
    assert fitted_psnr > 24 and fitted_psnr > random_psnr + 10, (random_psnr, fitted_psnr)


def test_train_dit_with_latent_cache_resumes_and_exports(vae_run, tmp_path):
    out, _ = vae_run
    cfg = DiTTrainingConfig(preset="tiny-test", batch_size=2, steps=2, save_every=2, log_every=1,
                            latent_cache_clips=4, durations=(1, 17), duration_weights=(0.5, 0.5),
                            warmup_steps=1)
    run = tmp_path / "dit"
    result = train_dit(cfg, str(out / "export"), str(run), export=str(tmp_path / "pipe"))
    assert result["steps"] == 2 and (run / "latents-4-rank0.pt").exists()
    cache = torch.load(run / "latents-4-rank0.pt")
    assert len(cache) == 4 and cache[0]["latent"].shape[0] == 4  # tiny-test VAE: 4 latent channels
    # the resumed run adds a cool-down: the lr falls linearly to 0 at its end (the log has the lr each step used:
    # the warmup starts from 0, and the last of 2 cool-down steps runs at half)
    result = train_dit(dataclass_replace(cfg, steps=3, decay_steps=2), str(out / "export"), str(run))
    assert result["steps"] == 3
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in logged] == [0.0, cfg.lr, cfg.lr / 2]
    assert json.loads((tmp_path / "pipe" / "transformer" / "provenance.json").read_text())["steps"] == 2
    # re-export in place, the VAE read from the folder being written (as `--vae pipelines/sora-tiny/vae`)
    train_dit(dataclass_replace(cfg, steps=3), str(tmp_path / "pipe" / "vae"), str(run), export=str(tmp_path / "pipe"))
    assert json.loads((tmp_path / "pipe" / "transformer" / "provenance.json").read_text())["steps"] == 3
    assert not (tmp_path / "pipe" / "text_encoder").exists()  # data-only: the encoder comes from its pip package
    # the exported folder carries the VAE's provenance beside its weights, not just the DiT's
    assert (tmp_path / "pipe" / "vae" / "provenance.json").read_bytes() == (out / "export" / "provenance.json").read_bytes()
    pipe = SoraPipeline.from_pretrained(tmp_path / "pipe")
    frames = pipe("a red circle", height=32, width=32, num_frames=1, num_inference_steps=1,
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 1, 32, 32, 3) and np.isfinite(frames).all()
    # a new run continues from the exported weights (lr 0: they must come out unchanged) and keeps their history
    init = tmp_path / "pipe" / "transformer"
    train_dit(dataclass_replace(cfg, steps=1, lr=0.0, init_from=str(init)), str(out / "export"), str(tmp_path / "dit2"),
              export=str(tmp_path / "pipe2"))
    before, after = load_file(init / "diffusion_pytorch_model.safetensors"), load_file(
        tmp_path / "pipe2" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    record = json.loads((tmp_path / "pipe2" / "transformer" / "provenance.json").read_text())
    assert record["steps"] == 1 and record["init_from"]["provenance"]["steps"] == 3


def test_batch_maker_encodes_each_caption_once(tiny_pipe):
    maker = BatchMaker(tiny_pipe, DiTTrainingConfig(), np.random.default_rng(0), "cpu", text_memo_size=3)
    encoded = []
    hook = tiny_pipe.text_encoder.register_forward_hook(
        lambda module, args, kwargs, out: encoded.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        batch = [["a red circle", "a blue square spinning on sand"], ["a red circle"]]
        tokens, pooled, text_seg = maker.encode_texts(batch)
        assert encoded == [2]  # one batch, each distinct caption once
        for texts, item_tokens, item_pooled, item_seg in zip(batch, tokens, pooled, text_seg):
            alone = [tiny_pipe.encode_prompt(t, 1, 128, "cpu") for t in texts]  # (states, mask, pooled) each
            expected = torch.cat([states[0][mask[0].bool()] for states, mask, _ in alone])
            torch.testing.assert_close(item_tokens, expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(item_pooled, torch.cat([p for _, _, p in alone]), atol=1e-5, rtol=1e-5)
            lengths = [int(mask.sum()) for _, mask, _ in alone]
            assert item_seg.tolist() == [s for s, n in enumerate(lengths) for _ in range(n)]
        encoded.clear()
        again = maker.encode_texts([["a red circle"], ["a blue square spinning on sand"]])
        assert encoded == [] and torch.equal(again[0][0], tokens[1])  # all from the memo
        maker.encode_texts([["a green triangle"], ["a red circle", "a yellow circle bouncing"]])
        assert encoded == [2] and len(maker.text_memo) == 3  # the least recently used caption made room
        assert "a blue square spinning on sand" not in maker.text_memo and "a red circle" in maker.text_memo
    finally:
        hook.remove()
    keep_all = BatchMaker(tiny_pipe, DiTTrainingConfig(), np.random.default_rng(0), "cpu", text_memo_size=None)
    keep_all.encode_texts([[f"a red circle {i}"] for i in range(5)])
    assert len(keep_all.text_memo) == 5  # a latent cache's closed set of captions stays whole


def test_lr_warms_up_stays_and_cools_down():
    cfg = DiTTrainingConfig(steps=1000, warmup_steps=100, decay_steps=400)
    factors = [lr_factor(step, 1000, cfg) for step in (0, 50, 100, 600, 800, 1000)]
    assert factors == [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]
    assert lr_factor(5000, 1000, DiTTrainingConfig(steps=1000, warmup_steps=100)) == 1.0  # no decay: constant


def test_lr_cools_down_by_the_end_of_the_time_budget():
    from sora_hf.training.common import steps_within_budget

    cfg = DiTTrainingConfig(steps=100_000, warmup_steps=100, decay_steps=400, time_budget_h=1.0)
    # 100 steps a minute: the hour ends the run at step 6000, long before `steps`, and the lr reaches 0 there
    factors = [lr_factor(step, steps_within_budget(cfg.steps, step, step * 0.6, cfg.time_budget_h), cfg)
               for step in (1000, 5600, 5800, 6000)]
    assert factors == [1.0, 1.0, 0.5, 0.0]


def test_uniform_fraction_trains_the_low_noise_end():
    rng = np.random.default_rng(0)
    shifted = sample_sigmas(20000, rng, DiTTrainingConfig(shift=3.0))
    mixed = sample_sigmas(20000, rng, DiTTrainingConfig(shift=3.0, uniform_fraction=0.5))
    assert (shifted < 0.2).float().mean() < 0.02  # the shifted logit-normal alone hardly visits low noise
    assert abs((mixed < 0.2).float().mean() - 0.5 * 0.2) < 0.02  # half the clips now spread over [0, 1]
    assert ((mixed >= 0) & (mixed <= 1)).all() and abs(mixed.median() - 0.5) < 0.2


def test_channel_weights_turn_the_loss_into_raw_latent_mse():
    std = [4.0, 2.0, 1.0, 1.0]
    assert channel_loss_weights(std, 0.0) is None and channel_loss_weights(None, 0.0) is None
    with pytest.raises(ValueError, match="channel_weight_power=1.0 .* latents_std"):
        channel_loss_weights(None, 1.0)  # a VAE without statistics: say so, rather than train unweighted
    weights = channel_loss_weights(std, 1.0)
    assert torch.allclose(weights, torch.tensor([16.0, 4.0, 1.0, 1.0]) / 5.5)
    # a unit error in normalised channel 0 (std 4) is 4 raw units, in channel 3 (std 1) one: at power 1 the loss
    # ranks them as raw-latent MSE does (16 : 1); at power 0 it cannot tell them apart
    target = torch.zeros(4, 2, 3, 3)
    errors = [target.clone(), target.clone()]
    errors[0][0] += 1.0
    errors[1][3] += 1.0

    def loss(prediction, channel_weights):
        return flow_matching_loss([prediction], dict(targets=[target], weights=[torch.ones(2)]), channel_weights).item()

    assert loss(errors[0], weights) == pytest.approx(16 * loss(errors[1], weights), rel=1e-5)
    assert loss(errors[0], None) == loss(errors[1], None)


def dataclass_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def test_progress_bar_total_follows_the_time_budget():
    from sora_hf.training.common import steps_within_budget

    assert steps_within_budget(3000, 100, 60.0, 0.0) == 3000  # no budget: the step count ends the run
    assert steps_within_budget(100_000, 100, 60.0, 1.0) == 6000  # 100 steps a minute for an hour
    assert steps_within_budget(3000, 100, 60.0, 1.0) == 3000  # the steps end it first
    assert steps_within_budget(100_000, 500, 4000.0, 1.0) == 500  # over budget: it ends now
    assert steps_within_budget(100_000, 0, 0.0, 1.0) == 100_000  # no pace yet


@pytest.mark.parametrize("command", ["train-dit", "train-vae"])
def test_two_processes_train_one_run(vae_run, tmp_path, command):
    """Two data-parallel processes (torchrun on the CPU, gloo) make one run: one log line per step with the loss
    averaged over both, one summary, and a wall-clock budget that both agree has ended. Each process reading its
    own clock would let one stop while the other waits for its gradients, or train at another lr."""
    import os
    import subprocess
    import sys

    out, _ = vae_run
    run = tmp_path / "run"
    common = ["--out", str(run), "--steps", "100000", "--time-budget-h", "0.001", "--save-every", "100000",
              "--log-every", "1", "--warmup-steps", "1", "--durations", "1,17", "--duration-weights", "0.5,0.5"]
    # the DiT with gradient checkpointing, which must agree with DDP's gradient hooks
    args = {"train-dit": ["--vae", str(out / "export"), "--preset", "tiny-test", "--batch-size", "2",
                          "--gradient-checkpointing", "true"],
            "train-vae": ["--preset", "tiny-test", "--pixels-per-step", str(TINY_VAE["pixels_per_step"]),
                          "--crop-size", "32", "--tier2-fraction", "0", "--pca-batches", "2", "--stats-clips", "2",
                          "--eval-every", "100000"]}[command]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "sora_hf.cli", command, *args, *common],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, done.stdout  # printed by the main process only
    steps = summaries[0]["steps"]
    assert 1 < steps < 100000  # the budget (3.6 s) ended it
    logged = [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert logged == list(range(1, steps + 1))  # one line a step, not one a process
    assert json.loads((run / f"checkpoint-{steps}" / "state.json").read_text())["step"] == steps
    assert json.loads((run / "config.json").read_text())["training"]["time_budget_h"] == 0.001


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """Two 32x32 images and a 17-frame 32x32 clip with their captions."""
    from sora_hf.shapeworld import render_clip
    from sora_hf.video_io import write_video

    videos = tmp_path_factory.mktemp("videos")
    lines = []
    for i, frames in enumerate([1, 1, 17]):
        clip = render_clip(30 + i, height=32, width=32, num_frames=frames)
        name = f"{i}.{'png' if frames == 1 else 'mp4'}"
        write_video(videos / name, clip.frames)
        lines.append(json.dumps({"file": name, "short": clip.captions.short, "long": clip.captions.long}))
    (videos / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return videos


def test_train_vae_on_a_video_folder(video_folder, tmp_path):
    cfg = VAETrainingConfig(steps=2, folder_size=(32, 48), **TINY_VAE)
    result = train_vae(cfg, str(tmp_path / "run"), export=str(tmp_path / "vae"), video_folder=str(video_folder))
    assert result["steps"] == 2
    record = json.loads((tmp_path / "vae" / "provenance.json").read_text())
    assert record["data"] == f"video folder {video_folder}" and len(record["latents"]["std"]) == 4
    with pytest.raises(ValueError, match=r"--folder-size 32,40: width=40 must be a positive multiple of 16"):
        train_vae(dataclass_replace(cfg, folder_size=(32, 40)), str(tmp_path / "run2"), video_folder=str(video_folder))
    assert not (tmp_path / "run2").exists()


def test_train_dit_on_a_video_folder(vae_run, video_folder, tmp_path):
    out, _ = vae_run
    videos = video_folder
    cfg = DiTTrainingConfig(preset="tiny-test", batch_size=2, steps=3, save_every=3, log_every=1, warmup_steps=1)
    result = train_dit(cfg, str(out / "export"), str(tmp_path / "run"), video_folder=str(videos))
    assert result["steps"] == 3  # 3 clips in batches of 2: one batch an epoch, so three epochs
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["batch_size"] == 2
    # a batch the folder cannot fill fails before the run folder is made
    with pytest.raises(ValueError, match=r"batch_size=4: .* holds 3 clips; allowed: 1 to 3 per batch"):
        train_dit(dataclass_replace(cfg, batch_size=4), str(out / "export"), str(tmp_path / "run2"),
                  video_folder=str(videos))
    assert not (tmp_path / "run2").exists()
    # real video comes at any size and length: resized and cropped to --folder-size, a random window of
    # --folder-num-frames (here one frame of each file, at 32x48: 4x6 latent pixels of the tiny VAE's 4 channels)
    sized = dataclass_replace(cfg, steps=1, latent_cache_clips=3, folder_size=(32, 48), folder_num_frames=1,
                              num_workers=0)
    train_dit(sized, str(out / "export"), str(tmp_path / "run3"), video_folder=str(videos))
    cache = torch.load(tmp_path / "run3" / "latents-3-rank0.pt")
    assert [tuple(c["latent"].shape) for c in cache] == [(4, 1, 4, 6)] * 3
    with pytest.raises(ValueError, match=r"--folder-num-frames 3: num_frames=3 must be 1 \+ 4k"):
        train_dit(dataclass_replace(cfg, folder_num_frames=3), str(out / "export"), str(tmp_path / "run4"),
                  video_folder=str(videos))
