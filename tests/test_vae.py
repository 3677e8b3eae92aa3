"""AutoencoderKLSora on a tiny random config: shapes, causality, determinism,
save/load, tiling, slicing and the errors bad input gets."""

from __future__ import annotations

import pytest
import torch

from sora_hf.models.autoencoder_kl_sora import AutoencoderKLSora


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    model = AutoencoderKLSora.from_preset("tiny-test").eval()
    # zero-initialised residual branches would make the random model too simple to test causality with
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def video(batch=1, frames=9, height=16, width=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, height, width, generator=g) * 2 - 1


def encode(vae, x):
    with torch.no_grad():
        return vae.encode(x).latent_dist.mode()


def decode(vae, z):
    with torch.no_grad():
        return vae.decode(z).sample


# ----------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("frames,height,width", [(1, 16, 16), (5, 16, 16), (9, 16, 24), (13, 24, 8)])
def test_shapes(vae, frames, height, width):
    x = video(2, frames, height, width)
    z = encode(vae, x)
    assert z.shape == (2, 4, 1 + (frames - 1) // 4, height // 8, width // 8)
    assert decode(vae, z).shape == x.shape
    assert vae.spatial_compression_ratio == 8 and vae.temporal_compression_ratio == 4


def test_forward_and_posterior(vae):
    x = video()
    out = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(0))
    assert out.sample.shape == x.shape
    post = vae.encode(x).latent_dist
    assert post.mean.shape == post.logvar.shape == (1, 4, 3, 2, 3)


# ----------------------------------------------------------------------------
# Causality: latents up to t never depend on frames after t
# ----------------------------------------------------------------------------

def test_causal_encoder(vae):
    x = video(frames=13)
    z = encode(vae, x)
    for j in range(3):  # latent frame j sees pixel frames 0 .. 4j
        changed = x.clone()
        changed[:, :, 4 * j + 1:] = video(frames=13, seed=j + 1)[:, :, 4 * j + 1:]
        z2 = encode(vae, changed)
        torch.testing.assert_close(z2[:, :, :j + 1], z[:, :, :j + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(z2[:, :, j + 1:], z[:, :, j + 1:])  # later latents do change


def test_causal_decoder(vae):
    z = encode(vae, video(frames=13))
    y = decode(vae, z)
    changed = z.clone()
    changed[:, :, 2:] += 1.0
    y2 = decode(vae, changed)
    torch.testing.assert_close(y2[:, :, :5], y[:, :, :5], rtol=0, atol=1e-6)  # latents 0, 1 -> frames 0 .. 4


def test_image_is_first_frame(vae):
    x = video(frames=9)
    torch.testing.assert_close(encode(vae, x[:, :, :1]), encode(vae, x)[:, :, :1], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------
# Determinism and save -> load
# ----------------------------------------------------------------------------

def test_determinism(vae):
    x = video()
    assert torch.equal(encode(vae, x), encode(vae, x))
    z = encode(vae, x)
    assert torch.equal(decode(vae, z), decode(vae, z))
    sample = lambda: vae.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(3))  # noqa: E731
    assert torch.equal(sample(), sample())


def test_save_load_identical(vae, tmp_path):
    vae.register_to_config(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0])
    try:
        vae.save_pretrained(tmp_path)
        loaded = AutoencoderKLSora.from_pretrained(tmp_path).eval()
    finally:
        vae.register_to_config(latents_mean=None, latents_std=None)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert loaded.config.latents_std == [1.5, 0.5, 2.0, 1.0]
    x = video()
    z = encode(vae, x)
    assert torch.equal(encode(loaded, x), z)
    assert torch.equal(decode(loaded, z), decode(vae, z))
    torch.testing.assert_close(loaded.denormalize_latents(loaded.normalize_latents(z)), z)


# ----------------------------------------------------------------------------
# Memory savers
# ----------------------------------------------------------------------------

@pytest.fixture
def tiled(vae):
    saved = (vae.tile_sample_min_size, vae.tile_sample_stride, vae.tile_latent_frames)
    vae.enable_tiling()
    yield vae
    vae.disable_tiling()
    vae.tile_sample_min_size, vae.tile_sample_stride, vae.tile_latent_frames = saved


def test_temporal_chunks_equal_full_pass(vae, tiled):
    x = video(frames=21, height=16, width=16)
    z_full = encode(vae, x)
    y_full = decode(vae, z_full)
    tiled.enable_tiling(tile_latent_frames=1)  # chunks of 4 frames / 1 latent frame, carrying the causal cache
    torch.testing.assert_close(encode(tiled, x), z_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(decode(tiled, z_full), y_full, rtol=0, atol=1e-5)


def test_spatial_tiles_close_to_full_pass(vae, tiled):
    x = video(frames=5, height=64, width=192)  # wider than a 128 px tile: 2 tiles blended over 32 px
    z_full = encode(vae, x)
    y_full = decode(vae, z_full)
    z_tiled, y_tiled = encode(tiled, x), decode(tiled, z_full)
    assert z_tiled.shape == z_full.shape and y_tiled.shape == y_full.shape
    # only the seams differ (there a tile's receptive field misses pixels the full pass sees); even on
    # random weights, whose receptive field is wider than a trained model's, that is a few percent
    assert (z_tiled - z_full).abs().mean() < 0.05 * z_full.abs().mean()
    assert (y_tiled - y_full).abs().mean() < 0.05 * y_full.abs().mean()
    left = slice(0, 64)  # far from the seam (tiles at 0 and 96 px): identical
    torch.testing.assert_close(y_tiled[..., left], y_full[..., left], rtol=0, atol=1e-2)


def test_slicing_equals_batch(vae):
    x = video(batch=3)
    z = encode(vae, x)
    y = decode(vae, z)
    vae.enable_slicing()
    try:
        torch.testing.assert_close(encode(vae, x), z, rtol=0, atol=1e-5)  # batch 1 vs 3: float rounding only
        torch.testing.assert_close(decode(vae, z), y, rtol=0, atol=1e-5)
    finally:
        vae.disable_slicing()


# ----------------------------------------------------------------------------
# Bad input: one clear ValueError naming the argument, the value and what is allowed
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: video(frames=4), r"4 frames.*1 \+ 4k"),
    (lambda: video(frames=8), r"8 frames"),
    (lambda: video(height=20), r"height=20 is not a multiple of the spatial compression 8"),
    (lambda: video(width=12), r"width=12"),
    (lambda: torch.zeros(1, 4, 5, 16, 16), r"4 channels.*expected 3"),
    (lambda: torch.zeros(1, 3, 16, 16), r"expected 5 dims"),
    (lambda: torch.zeros(1, 3, 5, 16, 16, dtype=torch.float64), r"dtype=torch.float64.*torch.float32"),
    (lambda: torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8), r"dtype=torch.uint8"),
    (lambda: video().index_fill(2, torch.tensor([3]), float("nan")), r"NaN"),
    (lambda: video() * 127.5 + 127.5, r"\[-1, 1\]"),
    (lambda: [[0.0]], r"torch.Tensor"),
])
def test_bad_video(vae, make, match):
    with pytest.raises(ValueError, match=match):
        vae.encode(make())


def test_mixed_precision_autocast_is_not_a_dtype_mismatch(vae):
    """accelerate's --mixed_precision bf16 runs the float32 model under autocast: its bf16 latents must decode,
    while a bf16 tensor given without autocast is still the clear dtype error."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = vae.encode(video()).latent_dist.mode()
        assert z.dtype == torch.bfloat16
        x = vae.decode(z).sample
    assert x.shape == video().shape and torch.isfinite(x).all()
    with pytest.raises(ValueError, match=r"z.dtype=torch.bfloat16 does not match the model's dtype torch.float32"):
        vae.decode(z)


def test_bad_latents(vae):
    with pytest.raises(ValueError, match=r"z has 3 channels.*expected 4"):
        vae.decode(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"NaN"):
        vae.decode(torch.full((1, 4, 2, 2, 2), float("inf")))


def test_bad_tiling_arguments(vae):
    with pytest.raises(ValueError, match=r"tile_sample_min_size=100 must be a positive multiple of 8"):
        vae.enable_tiling(tile_sample_min_size=100)
    with pytest.raises(ValueError, match=r"tile_sample_stride=160 must be <= tile_sample_min_size=128"):
        vae.enable_tiling(tile_sample_stride=160)
    with pytest.raises(ValueError, match=r"tile_latent_frames=0"):
        vae.enable_tiling(tile_latent_frames=0)
    assert not vae.use_tiling


def test_bad_config():
    with pytest.raises(ValueError, match=r"preset='huge'.*sora-tiny"):
        AutoencoderKLSora.from_preset("huge")
    with pytest.raises(ValueError, match=r"temporal_downsample"):
        AutoencoderKLSora(block_out_channels=(8, 16), temporal_downsample=(True,))
    with pytest.raises(ValueError, match=r"latents_mean has 2 entries"):
        AutoencoderKLSora.from_preset("tiny-test", latents_mean=[0.0, 0.0])
