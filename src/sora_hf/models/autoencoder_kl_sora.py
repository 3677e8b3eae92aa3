"""AutoencoderKLSora: the causal 3-D video VAE of sora-hf.

Self-contained (imports torch and diffusers only): the same file serves the
installed package and a Hub repo loaded with `trust_remote_code=True`.

    x (B, 3, 1+4k, H, W) in [-1, 1]  --encode-->  z (B, C_z, 1+k, H/8, W/8)  --decode-->  x_hat

Design
------
- A linear skeleton plus a convolutional residual. Each 4x8x8 block of pixels
  maps linearly to one latent vector (`encoder.patch_proj`, a stride-(4, 8, 8)
  conv) and back (`decoder.patch_proj`, its transpose); `init_skeleton_from_pca`
  sets both to the PCA of training blocks, the best linear autoencoder of the
  data. The convolutional encoder and decoder add to it, and their last convs
  start at zero, so training starts from the PCA solution instead of from noise.
  The same convolutional network trained from scratch was still at 21 dB after
  27 CPU-minutes, below plain 8x8 average pooling (24.9 dB): most of what a
  video VAE must learn first is linear, and a CPU budget cannot afford to learn
  it by gradient descent.
- Causal in time. Every temporal convolution pads only on the past side (with
  copies of the first frame), the two 2x temporal downsamples pair frames
  (0, 0), (1, 2), (3, 4), ..., and the skeleton gives frame 0 a block of its
  own: latent frame j sees pixel frames 0 .. 4j only, the first frame is
  encoded on its own, and 1 + 4k frames <-> 1 + k latent frames.
- 2-D at high resolution, 3-D at low resolution. A stage is 3-D (causal 3x3x3
  convs) only once time has been downsampled; before that it is a per-frame
  2-D conv stack (Conv3d with a 1x3x3 kernel).
- Down/upsampling with non-parametric shortcuts (DC-AE, Chen et al. 2024):
  down = strided conv + (space/time-to-channel, channel-averaged), up =
  sub-pixel conv + (channel-duplicated, channel-to-space/time).
- Norm: RMSNorm over channels at each position (as Wan). GroupNorm would pool
  statistics over time (breaking causality) and over space (making tiles
  differ from the full pass); a per-position norm does neither. (It also
  erases a flat colour's brightness, which the skeleton carries instead.)
- 16 latent channels at 8x spatial / 4x temporal compression (48x fewer
  numbers than pixels), chosen for the DiT, not for reconstruction. With the
  PCA skeleton alone on 50 eval clips, 32 channels give 33.4 dB, 64 give
  36.2 dB, 96 give 38.9 dB, and 16 fewer still. But a DiT trained on 64-channel
  latents for 1,000 steps got 33-39% of colours right where the same DiT on
  16 channels got 72-89%, and the analyzer still reads 90% of shapes and
  motions from 16-channel reconstructions (98-100% at 64): fine detail lives in
  the many small components, and a small DiT spends its capacity on them.
  `latents_std` is per channel: the principal components span a 40:1 range of
  scales, and with one shared scale (tried first) the small ones only emerged
  in the last sampling step, as visible 8x8 block noise.
- No attention: ShapeWorld needs none, and without it spatial tiling is exact
  away from tile borders.
- Latent normalisation (`latents_mean`, `latents_std`, per channel) lives in
  the config; `normalize_latents` / `denormalize_latents` apply it.
- Memory: `enable_tiling()` encodes/decodes overlapping spatial tiles (blended
  linearly) and, within each tile, chunks of frames that carry each causal
  conv's last frames forward (the "causal cache"), so peak memory stays flat as
  clips grow and a temporally chunked pass equals the full pass.
  `enable_slicing()` runs one batch element at a time.

Measured (the shipped pipelines/sora-tiny/vae, 16 channels; bench/vae_reconstruction.py):
31.48 dB mean PSNR, SSIM 0.931 over 200 eval clips (pixel style 38.8, none 31.1,
neon 29.7, stop-motion 29.6, sketch 28.3, images 34.8); the 64-channel build
of the same design scored 36.70 dB. bench/vae_speed.py (64-channel build; the
convolutions are the same at 16): 5.2x the throughput of AutoencoderKLWan at
matched widths on 17x64x64. Open problem: the convolutional residual barely
learns on the training distribution yet (+0.2 dB in 100 decoder-only steps at
16 channels; at 64 its output stayed ~1e-3 after 500 steps, though it overfits
one clip quickly), so the shipped model is close to its PCA skeleton.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

# ----------------------------------------------------------------------------
# Presets: small dicts of config overrides. `AutoencoderKLSora.from_preset(name)`.
# ----------------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    # unit tests: the shipped layout at 0.1M parameters, milliseconds per call
    "tiny-test": dict(block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, patch_size=2,
                      temporal_downsample=(True, True)),
    # the shipped model (pipelines/sora-tiny/vae). 16 latent channels, not more: a DiT learns them several
    # times faster (colour 72-89% vs 33-39% after the same 1,000 steps), and the analyzer still reads
    # ~90% of shapes and motions from their reconstructions (64 channels: 36.7 dB but no DiT learned them here)
    "sora-tiny": dict(block_out_channels=(64, 128), latent_channels=16, layers_per_block=1, patch_size=2,
                      temporal_downsample=(True, True)),
}


# ----------------------------------------------------------------------------
# Shape helpers
# ----------------------------------------------------------------------------

def space_time_to_channel(x: torch.Tensor, st: int, ss: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C*st*ss*ss, T/st, H/ss, W/ss); channel index = c*st*ss*ss + (dt, dy, dx)."""
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // st, st, H // ss, ss, W // ss, ss)  # (B, C, T', st, H', ss, W', ss)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # (B, C, st, ss, ss, T', H', W')
    return x.reshape(B, C * st * ss * ss, T // st, H // ss, W // ss)  # (B, C*st*ss*ss, T', H', W')


def channel_to_space_time(x: torch.Tensor, st: int, ss: int) -> torch.Tensor:
    """Inverse of `space_time_to_channel`: (B, C*st*ss*ss, T, H, W) -> (B, C, T*st, H*ss, W*ss)."""
    B, CS, T, H, W = x.shape
    C = CS // (st * ss * ss)
    x = x.reshape(B, C, st, ss, ss, T, H, W)  # (B, C, st, ss, ss, T, H, W)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, T, st, H, ss, W, ss)
    return x.reshape(B, C, T * st, H * ss, W * ss)  # (B, C, T*st, H*ss, W*ss)


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------

class Streaming:
    """State a module carries from one temporal chunk to the next (see AutoencoderKLSora._streaming).

    Outside streaming every call is a whole clip that starts at frame 0.
    """

    streaming: bool = False
    cache = None  # causal conv: its last input frames; resampler: True once frame 0 has passed


class RMSNorm(nn.Module):
    """RMS norm over channels at every (t, y, x): causal and local, so chunks and tiles see the same thing."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        scale = torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps)  # (B, 1, T, H, W)
        return x * scale * self.weight.view(1, -1, 1, 1, 1)


class CausalConv3d(nn.Conv3d, Streaming):
    """Conv3d padded only on the past side in time (with copies of frame 0); 'same' padding in space.

    kernel (1, k, k) is a per-frame 2-D conv. While streaming, the last (kt - 1)
    input frames are kept and prepended to the next chunk, so chunked == full.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)):
        kt, kh, kw = kernel
        super().__init__(cin, cout, kernel, stride=stride, padding=(0, kh // 2, kw // 2))
        self.time_pad = kt - 1 if stride[0] == 1 else 0  # strided-in-time convs pair frames instead

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_pad:
            if self.streaming and self.cache is not None:
                past = self.cache  # (B, C, time_pad, H, W) from the previous chunk
            else:
                past = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)  # frame 0 repeated into the past
            x = torch.cat([past, x], dim=2)  # (B, C, time_pad + T, H, W)
            if self.streaming:
                self.cache = x[:, :, -self.time_pad:].clone()
        return super().forward(x)


class CausalPatchConv(nn.Conv3d, Streaming):
    """The encoder's linear skeleton: each (tc, s, s) block of pixels -> one latent vector.

    Causal like the rest: frame 0 is a block of its own (repeated tc times), so 1 + tc*k frames ->
    1 + k latent frames; while streaming, only the first chunk starts with frame 0.
    """

    def __init__(self, channels: int, latent_channels: int, tc: int, sc: int):
        super().__init__(channels, latent_channels, (tc, sc, sc), stride=(tc, sc, sc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 1 + tc*k, H, W) or a later chunk (B, 3, tc*k, H, W)
        first = not (self.streaming and self.cache)
        if self.streaming:
            self.cache = True
        if first:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.kernel_size[0] - 1, -1, -1), x], dim=2)
        return super().forward(x)  # (B, C_z, 1 + k, H/s, W/s)


class CausalPatchDeconv(nn.ConvTranspose3d, Streaming):
    """The decoder's linear skeleton, the transpose of CausalPatchConv: one latent vector -> a pixel block;
    latent frame 0 keeps only the last frame of its block."""

    def __init__(self, latent_channels: int, channels: int, tc: int, sc: int):
        super().__init__(latent_channels, channels, (tc, sc, sc), stride=(tc, sc, sc))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C_z, T, h, w)
        first = not (self.streaming and self.cache)
        if self.streaming:
            self.cache = True
        x = super().forward(z)  # (B, 3, tc*T, s*h, s*w)
        return x[:, :, self.kernel_size[0] - 1:] if first else x


class ResBlock(nn.Module):
    """Pre-activation residual block: (RMSNorm, SiLU, conv) x 2; 3-D (causal 3x3x3) or per-frame 2-D (1x3x3)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        kernel = (3, 3, 3) if temporal else (1, 3, 3)
        self.norm1 = RMSNorm(channels)
        self.conv1 = CausalConv3d(channels, channels, kernel)
        self.norm2 = RMSNorm(channels)
        self.conv2 = CausalConv3d(channels, channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Downsample(nn.Module, Streaming):
    """2x in space (and optionally 2x in time): strided conv + space/time-to-channel shortcut (channel-averaged).

    In time, frame 0 is paired with itself: (0, 0), (1, 2), (3, 4), ... -> 1 + T/2 frames from 1 + T.
    """

    def __init__(self, cin: int, cout: int, temporal: bool):
        super().__init__()
        self.st = 2 if temporal else 1
        if (cin * self.st * 4) % cout:
            raise ValueError(f"Downsample {cin}->{cout} channels: cin*{self.st * 4} must be a multiple of cout")
        self.conv = CausalConv3d(cin, cout, (self.st, 3, 3), stride=(self.st, 2, 2))
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, T, H, W)
        if self.st == 2:
            first = not (self.streaming and self.cache)
            if self.streaming:
                self.cache = True
            if first:
                x = torch.cat([x[:, :, :1], x], dim=2)  # (B, Cin, 1 + T, H, W): frame 0 paired with itself
        shortcut = space_time_to_channel(x, self.st, 2)  # (B, Cin*st*4, T', H/2, W/2)
        B, CS, T, H, W = shortcut.shape
        shortcut = shortcut.reshape(B, self.cout, CS // self.cout, T, H, W).mean(2)  # (B, Cout, T', H/2, W/2)
        return self.conv(x) + shortcut


class Upsample(nn.Module, Streaming):
    """2x in space (and optionally 2x in time): sub-pixel conv + channel-duplicating shortcut.

    In time, latent frame 0 becomes one frame (the first of its pair is dropped), every other frame two.
    """

    def __init__(self, cin: int, cout: int, temporal: bool):
        super().__init__()
        self.st = 2 if temporal else 1
        factor = self.st * 4
        if (cout * factor) % cin:
            raise ValueError(f"Upsample {cin}->{cout} channels: cout*{factor} must be a multiple of cin")
        self.repeats = cout * factor // cin
        self.conv = CausalConv3d(cin, cout * factor, (1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, T, H, W)
        h = self.conv(x) + x.repeat_interleave(self.repeats, dim=1)  # (B, Cout*st*4, T, H, W)
        h = channel_to_space_time(h, self.st, 2)  # (B, Cout, T*st, 2H, 2W)
        if self.st == 2:
            first = not (self.streaming and self.cache)
            if self.streaming:
                self.cache = True
            if first:
                h = h[:, :, 1:]  # (B, Cout, T*2 - 1, 2H, 2W): frame 0 decodes to one frame
        return h


# ----------------------------------------------------------------------------
# Encoder and decoder
# ----------------------------------------------------------------------------

def _stage_is_3d(temporal_downsample: Sequence[bool]) -> list[bool]:
    """Stage i runs causal 3-D convs iff time was already downsampled before it."""
    return [any(temporal_downsample[:i]) for i in range(len(temporal_downsample))]


class Encoder(nn.Module):
    def __init__(self, in_channels, latent_channels, block_out_channels, layers_per_block, patch_size,
                 temporal_downsample):
        super().__init__()
        self.patch_size = patch_size
        widths = list(block_out_channels) + [block_out_channels[-1]]  # the last downsample keeps the width
        is_3d = _stage_is_3d(temporal_downsample)
        self.conv_in = CausalConv3d(in_channels * patch_size**2, widths[0], (1, 3, 3))
        self.stages = nn.ModuleList()
        for i, width in enumerate(block_out_channels):
            stage = nn.Module()
            stage.blocks = nn.ModuleList([ResBlock(width, is_3d[i]) for _ in range(layers_per_block)])
            stage.down = Downsample(width, widths[i + 1], temporal_downsample[i])
            self.stages.append(stage)
        self.mid = nn.ModuleList([ResBlock(widths[-1], True) for _ in range(layers_per_block)])
        self.norm_out = RMSNorm(widths[-1])
        self.conv_out = CausalConv3d(widths[-1], 2 * latent_channels, (3, 3, 3))
        tc, sc = 2 ** sum(bool(t) for t in temporal_downsample), patch_size * 2 ** len(block_out_channels)
        self.patch_proj = CausalPatchConv(in_channels, latent_channels, tc, sc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, F, H, W)
        h = space_time_to_channel(x, 1, self.patch_size)  # (B, 3*p*p, F, H/p, W/p)
        h = self.conv_in(h)  # (B, C0, F, H/p, W/p)
        for stage in self.stages:
            for block in stage.blocks:
                h = block(h)
            h = stage.down(h)  # (B, C_{i+1}, F_{i+1}, H_i/2, W_i/2)
        for block in self.mid:
            h = block(h)
        moments = self.conv_out(F.silu(self.norm_out(h)))  # (B, 2*C_z, 1+k, H/8, W/8): mean and logvar
        mean, logvar = moments.chunk(2, dim=1)  # (B, C_z, 1+k, H/8, W/8) each
        return torch.cat([self.patch_proj(x) + mean, logvar], dim=1)  # linear skeleton + nonlinear residual


class Decoder(nn.Module):
    def __init__(self, out_channels, latent_channels, block_out_channels, layers_per_block, patch_size,
                 temporal_downsample):
        super().__init__()
        self.patch_size = patch_size
        widths = list(block_out_channels) + [block_out_channels[-1]]
        is_3d = _stage_is_3d(temporal_downsample)
        self.conv_in = CausalConv3d(latent_channels, widths[-1], (3, 3, 3))
        self.mid = nn.ModuleList([ResBlock(widths[-1], True) for _ in range(layers_per_block)])
        self.stages = nn.ModuleList()
        for i in reversed(range(len(block_out_channels))):  # mirror of the encoder, lowest resolution first
            stage = nn.Module()
            stage.up = Upsample(widths[i + 1], widths[i], temporal_downsample[i])
            stage.blocks = nn.ModuleList([ResBlock(widths[i], is_3d[i]) for _ in range(layers_per_block)])
            self.stages.append(stage)
        self.norm_out = RMSNorm(widths[0])
        self.conv_out = CausalConv3d(widths[0], out_channels * patch_size**2, (1, 3, 3))
        tc, sc = 2 ** sum(bool(t) for t in temporal_downsample), patch_size * 2 ** len(block_out_channels)
        self.patch_proj = CausalPatchDeconv(latent_channels, out_channels, tc, sc)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C_z, 1+k, h, w)
        h = self.conv_in(z)  # (B, C_last, 1+k, h, w)
        for block in self.mid:
            h = block(h)
        for stage in self.stages:
            h = stage.up(h)  # (B, C_i, F_i, 2h_i, 2w_i)
            for block in stage.blocks:
                h = block(h)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (B, 3*p*p, F, H/p, W/p)
        return self.patch_proj(z) + channel_to_space_time(h, 1, self.patch_size)  # (B, 3, F, H, W)


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------

class AutoencoderKLSora(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""Causal 3-D VAE: (B, 3, 1+4k, H, W) in [-1, 1] <-> latents (B, C_z, 1+k, H/8, W/8).

    Args:
        in_channels / out_channels: image channels (3).
        latent_channels: C_z.
        block_out_channels: width of each encoder stage (decoder mirrors it); each stage ends in a 2x
            spatial downsample, so spatial compression = patch_size * 2**len(block_out_channels).
        layers_per_block: residual blocks per stage (and in the middle).
        patch_size: pixel-unshuffle of the input before the first conv (1 = none).
        temporal_downsample: per stage, whether its downsample also halves time (causally);
            temporal compression = 2**sum(temporal_downsample).
        latents_mean / latents_std: per-channel statistics of `latent_dist.mode()` on training data,
            written by `sora-hf train-vae`; the DiT sees `(z - mean) / std`.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 16,
        block_out_channels: Sequence[int] = (64, 128),
        layers_per_block: int = 1,
        patch_size: int = 2,
        temporal_downsample: Sequence[bool] = (True, True),
        latents_mean: Optional[Sequence[float]] = None,
        latents_std: Optional[Sequence[float]] = None,
    ):
        super().__init__()
        if len(temporal_downsample) != len(block_out_channels):
            raise ValueError(f"temporal_downsample={list(temporal_downsample)} needs one entry per stage of "
                             f"block_out_channels={list(block_out_channels)}")
        for name, stats in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if stats is not None and len(stats) != latent_channels:
                raise ValueError(f"{name} has {len(stats)} entries; latent_channels={latent_channels} needs as many")
        args = (latent_channels, block_out_channels, layers_per_block, patch_size, temporal_downsample)
        self.encoder = Encoder(in_channels, *args)
        self.decoder = Decoder(out_channels, *args)
        self.spatial_compression_ratio = patch_size * 2 ** len(block_out_channels)
        self.temporal_compression_ratio = 2 ** sum(bool(t) for t in temporal_downsample)

        # memory savers (AutoencoderMixin.enable_tiling / enable_slicing switch these)
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_size = 128  # spatial tile (pixels); inputs no larger than this are not tiled
        self.tile_sample_stride = 96  # tiles overlap by 32 px (4 latent px), blended linearly
        self.tile_latent_frames = 2  # temporal chunk: 2 latent frames = 8 pixel frames (after frame 0)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """He-normal convs, zero biases, unit norms. Every residual branch starts at zero: each block's last
        conv, and the convolutional paths' last convs, so an untrained model is its linear skeleton (set it
        with `init_skeleton_from_pca`); the posterior starts nearly deterministic (log-variance -8)."""
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        if isinstance(module, ResBlock):
            nn.init.zeros_(module.conv2.weight)
        elif isinstance(module, Encoder):
            nn.init.zeros_(module.conv_out.weight)
            nn.init.constant_(module.conv_out.bias[module.conv_out.out_channels // 2:], -8.0)
        elif isinstance(module, Decoder):
            nn.init.zeros_(module.conv_out.weight)

    @torch.no_grad()
    def init_skeleton_from_pca(self, videos: Sequence[torch.Tensor]) -> float:
        """Set the linear skeleton (encoder/decoder `patch_proj`) to the PCA of the pixel blocks of `videos`
        ((B, 3, 1+4k, H, W) each, in [-1, 1]): the best linear autoencoder of that data, which the
        convolutional paths then refine. Returns the fraction of the block variance the latents keep."""
        enc, dec = self.encoder.patch_proj, self.decoder.patch_proj
        tc, s, k = enc.kernel_size[0], enc.kernel_size[1], enc.out_channels
        rows = []
        for x in videos:
            x = torch.cat([x[:, :, :1].expand(-1, -1, tc - 1, -1, -1), x], dim=2)  # (B, 3, tc*(1+k), H, W)
            B, C, T, H, W = x.shape
            x = x.reshape(B, C, T // tc, tc, H // s, s, W // s, s)  # (B, C, T', tc, H', s, W', s)
            rows.append(x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(-1, C * tc * s * s))  # (B*T'*H'*W', C*tc*s*s)
        blocks = torch.cat(rows).double()
        mean = blocks.mean(0)  # (D,)
        centred = blocks - mean
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(blocks))  # ascending
        top = eigenvectors[:, -k:].flip(1)  # (D, k): principal directions, largest first
        enc.weight.copy_(top.T.reshape(enc.weight.shape))
        enc.bias.copy_(-(mean @ top))
        dec.weight.copy_(top.T.reshape(dec.weight.shape))
        dec.bias.copy_(mean.reshape(dec.out_channels, -1).mean(1))  # the mean block, per channel
        return float(eigenvalues[-k:].sum() / eigenvalues.sum())

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "AutoencoderKLSora":
        if name not in PRESETS:
            raise ValueError(f"preset={name!r} is not known; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # ------------------------------------------------------------------------
    # Input checks: one clear ValueError naming the argument, the value and what is allowed
    # ------------------------------------------------------------------------

    def _check_tensor(self, name: str, t, channels: int) -> None:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 5:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; expected 5 dims (batch, channels, frames, "
                             f"height, width) — an image is a 1-frame video: x.unsqueeze(2)")
        if t.shape[1] != channels:
            raise ValueError(f"{name} has {t.shape[1]} channels (shape {tuple(t.shape)}); expected {channels}")
        if t.dtype != self.dtype and not torch.is_autocast_enabled(t.device.type):  # autocast casts op by op
            raise ValueError(f"{name}.dtype={t.dtype} does not match the model's dtype {self.dtype}; "
                             f"use {name}.to({self.dtype}) or model.to({t.dtype})")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or Inf values")

    def _check_video(self, x) -> None:
        self._check_tensor("x", x, self.config.in_channels)
        frames, height, width = x.shape[2:]
        tc, sc = self.temporal_compression_ratio, self.spatial_compression_ratio
        if (frames - 1) % tc:
            raise ValueError(f"x has {frames} frames; the causal VAE needs 1 + {tc}k frames "
                             f"(1, {1 + tc}, {1 + 2 * tc}, ..., {1 + 4 * tc}, ...)")
        for axis, size in (("height", height), ("width", width)):
            if size % sc:
                raise ValueError(f"x {axis}={size} is not a multiple of the spatial compression {sc} "
                                 f"(allowed: {sc}, {2 * sc}, {3 * sc}, ...)")
        lo, hi = x.min().item(), x.max().item()
        if lo < -1.5 or hi > 1.5:
            raise ValueError(f"x must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}] "
                             f"(uint8 frames: x / 127.5 - 1)")

    def _check_latents(self, z) -> None:
        self._check_tensor("z", z, self.config.latent_channels)

    # ------------------------------------------------------------------------
    # Latent normalisation (statistics stored in the config)
    # ------------------------------------------------------------------------

    def _latent_stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        C = self.config.latent_channels
        mean = self.config.latents_mean or [0.0] * C
        std = self.config.latents_std or [1.0] * C
        as_tensor = lambda v: torch.tensor(v, dtype=z.dtype, device=z.device).view(1, C, 1, 1, 1)  # noqa: E731
        return as_tensor(mean), as_tensor(std)

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latents -> the unit-scale latents the DiT is trained on."""
        mean, std = self._latent_stats(z)
        return (z - mean) / std

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(z)
        return z * std + mean

    # ------------------------------------------------------------------------
    # Memory savers: temporal chunks with a causal cache, spatial tiles, batch slices
    # ------------------------------------------------------------------------

    def enable_tiling(self, tile_sample_min_size: Optional[int] = None, tile_sample_stride: Optional[int] = None,
                      tile_latent_frames: Optional[int] = None) -> None:
        """Encode/decode in overlapping spatial tiles and temporal chunks (same results in time, close in space).

        tile_sample_min_size: tile side in pixels (inputs no larger are not split); tile_sample_stride: step
        between tiles (overlap = size - stride, blended); tile_latent_frames: latent frames per temporal chunk.
        """
        sc = self.spatial_compression_ratio
        size = self.tile_sample_min_size if tile_sample_min_size is None else tile_sample_min_size
        stride = self.tile_sample_stride if tile_sample_stride is None else tile_sample_stride
        frames = self.tile_latent_frames if tile_latent_frames is None else tile_latent_frames
        for name, value in (("tile_sample_min_size", size), ("tile_sample_stride", stride)):
            if not isinstance(value, int) or value < sc or value % sc:
                raise ValueError(f"{name}={value!r} must be a positive multiple of {sc} (the spatial compression)")
        if stride > size:
            raise ValueError(f"tile_sample_stride={stride} must be <= tile_sample_min_size={size} (tiles must overlap "
                             f"or touch)")
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"tile_latent_frames={frames!r} must be a positive integer")
        self.tile_sample_min_size, self.tile_sample_stride, self.tile_latent_frames = size, stride, frames
        self.use_tiling = True

    @contextmanager
    def _streaming(self):
        """Within this block, consecutive calls are consecutive temporal chunks of one clip."""
        modules = [m for m in self.modules() if isinstance(m, Streaming)]
        for m in modules:
            m.streaming, m.cache = True, None
        try:
            yield
        finally:
            for m in modules:
                m.streaming, m.cache = False, None

    def _chunked_in_time(self, fn: Callable, x: torch.Tensor, chunk: int) -> torch.Tensor:
        """fn over frame 0 alone, then over chunks of `chunk` frames, carrying the causal cache."""
        if not self.use_tiling or x.shape[2] <= 1 + chunk:
            return fn(x)
        with self._streaming():
            outs = [fn(x[:, :, :1])] + [fn(x[:, :, s:s + chunk]) for s in range(1, x.shape[2], chunk)]
        return torch.cat(outs, dim=2)  # (B, C, T_out, H_out, W_out)

    def _tiled_in_space(self, fn: Callable, x: torch.Tensor, tile: int, stride: int, scale: float) -> torch.Tensor:
        """fn over overlapping (tile x tile) windows of x, outputs blended linearly in the overlaps.

        scale = output pixels per input pixel (1/8 to encode, 8 to decode).
        """
        H, W = x.shape[-2:]
        if not self.use_tiling or (H <= tile and W <= tile):
            return fn(x)
        out_stride, blend = int(stride * scale), int((tile - stride) * scale)
        rows = [[fn(x[..., i:i + tile, j:j + tile]) for j in range(0, W, stride)] for i in range(0, H, stride)]
        out_rows = []
        for i, row in enumerate(rows):
            out_row = []
            for j, t in enumerate(row):
                if i > 0:
                    t = _blend(rows[i - 1][j], t, blend, dim=-2)
                if j > 0:
                    t = _blend(row[j - 1], t, blend, dim=-1)
                out_row.append(t[..., :out_stride, :out_stride])
            out_rows.append(torch.cat(out_row, dim=-1))
        return torch.cat(out_rows, dim=-2)[..., :int(H * scale), :int(W * scale)]  # (B, C, T, H_out, W_out)

    def _sliced(self, fn: Callable, x: torch.Tensor) -> torch.Tensor:
        if self.use_slicing and x.shape[0] > 1:
            return torch.cat([fn(s) for s in x.split(1)], dim=0)
        return fn(x)

    # ------------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------------

    def _encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, F, H, W) -> (B, 2*C_z, 1+k, H/8, W/8)
        chunk = self.tile_latent_frames * self.temporal_compression_ratio
        frames = lambda t: self._chunked_in_time(self.encoder, t, chunk)  # noqa: E731
        sc = self.spatial_compression_ratio
        return self._tiled_in_space(frames, x, self.tile_sample_min_size, self.tile_sample_stride, 1 / sc)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, C_z, 1+k, h, w) -> (B, 3, 1+4k, 8h, 8w)
        frames = lambda t: self._chunked_in_time(self.decoder, t, self.tile_latent_frames)  # noqa: E731
        sc = self.spatial_compression_ratio
        return self._tiled_in_space(frames, z, self.tile_sample_min_size // sc, self.tile_sample_stride // sc, sc)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """x (B, 3, 1+4k, H, W) in [-1, 1], H and W multiples of 8 -> posterior over (B, C_z, 1+k, H/8, W/8)."""
        self._check_video(x)
        moments = self._sliced(self._encode, x)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """z (B, C_z, 1+k, h, w) -> sample (B, 3, 1+4k, 8h, 8w), roughly in [-1, 1] (not clamped)."""
        self._check_latents(z)
        sample = self._sliced(self._decode, z)
        return DecoderOutput(sample=sample) if return_dict else (sample,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False,
                generator: Optional[torch.Generator] = None, return_dict: bool = True):
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)


def _blend(a: torch.Tensor, b: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Cross-fade the last `extent` entries of a into the first of b along dim (linear ramp)."""
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent <= 0:
        return b
    ramp = (torch.arange(extent, dtype=b.dtype, device=b.device) / extent)  # (extent,)
    ramp = ramp.view(-1, 1) if dim == -2 else ramp  # broadcast along H or W
    head = a.narrow(dim, a.shape[dim] - extent, extent) * (1 - ramp) + b.narrow(dim, 0, extent) * ramp
    return torch.cat([head, b.narrow(dim, extent, b.shape[dim] - extent)], dim=dim)
