"""SoraTransformer3DModel: a diffusion transformer over spacetime latent patches.

Self-contained (torch + diffusers only): the same file is the installed
package's model and the `transformer_sora.py` of a Hub repo loaded with
`trust_remote_code=True`.

What it does, in the order of `forward`:
1. Patchify latents (B, C, F, H, W) into tokens of pt x p x p latent voxels and
   embed them with one linear layer (no positional table: nothing about the
   size is baked into the weights).
2. 3-D RoPE: each head's channels are split into (t, y, x) groups that rotate
   with the token's integer patch position, so any duration, height and width
   works at inference.
3. Conditioning per *latent frame*: c_f = TimestepEmbedding(t_f) + MLP(pooled
   text of the segment covering f). Per-frame timesteps are what every creative
   tool is built on (a frame with t_f = 0 is a given, clean frame); per-frame
   pooled text is what makes storyboards work.
4. N blocks of: adaLN-Zero self-attention over all tokens (+RoPE, qk-norm),
   cross-attention to the text tokens *of the frame's own segment* (a mask,
   Flamingo-style gating along time), adaLN-Zero MLP. Modulations are computed
   per frame and gathered to tokens, so they cost F, not F*H*W, rows.
5. adaLN final layer, linear to patch voxels, unpatchify -> (B, C, F, H, W):
   the flow-matching velocity.

Patch n' Pack: `forward_packed` takes latents of different sizes and durations,
packs their tokens into rows of at most `max_tokens_per_row`, so the linear
layers run on full rows, while attention stays inside each sample (a
`BlockDiagonalMask`, computed per group of equal-length samples rather than as
a dense row-by-row mask), and returns one output per sample, equal to running
each alone.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin, AttentionModuleMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import apply_lora_scale

# ----------------------------------------------------------------------------
# Presets: `SoraTransformer3DModel(**PRESETS[name], in_channels=...)`
# ----------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "tiny-test": dict(num_layers=2, hidden_size=64, num_attention_heads=4),  # unit tests
    # shipped, trained on CPU (9.3M). Its grids are 4-14 tokens a side: at RoPE's usual theta (1e4) only ~3 of a
    # head's 12 rotation pairs per axis tell neighbours apart and attention stayed near uniform (normalised entropy
    # 0.9 after 1,400 steps, objects scattered as token-sized blobs); at 100 about twice as many do
    "sora-tiny": dict(num_layers=6, hidden_size=256, num_attention_heads=4, rope_theta=100.0),
    # DiT-S/B/L widths and depths, for GPUs: 40.2M / 160M / 561M parameters on 16 latent channels (DiT's own are
    # 33M / 130M / 458M: ours add cross-attention to every block)
    "S": dict(num_layers=12, hidden_size=384, num_attention_heads=6),
    "B": dict(num_layers=12, hidden_size=768, num_attention_heads=12),
    "L": dict(num_layers=24, hidden_size=1024, num_attention_heads=16),
}


# ----------------------------------------------------------------------------
# Positions: 3-D rotary embedding
# ----------------------------------------------------------------------------

def rope_axes_split(head_dim: int) -> tuple[int, int, int]:
    """Channels per (t, y, x) axis: a quarter to time, the rest split over space, all even."""
    t = 2 * (head_dim // 8)
    y = 2 * ((head_dim - t) // 4)
    return t, y, head_dim - t - y


def rope_frequencies(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """positions (..., 3) integer (t, y, x) -> the (cos, sin) of each pair's rotation (..., head_dim // 2, 2),
    real so that torch.compile can use them (`apply_rope` views them as complex numbers in eager mode)."""
    angles = []
    for axis, dim in enumerate(rope_axes_split(head_dim)):
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
        angles.append(positions[..., axis, None].float() * inv_freq)  # (..., dim / 2)
    angles = torch.cat(angles, -1)  # (..., head_dim / 2)
    return torch.stack([angles.cos(), angles.sin()], -1)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """x (B, heads, N, head_dim) with each pair of channels (2i, 2i + 1) rotated by freqs (B or 1, 1, N,
    head_dim // 2, 2), the (cos, sin) from `rope_frequencies`."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, heads, N, head_dim/2, 2)
    if torch.compiler.is_compiling():  # inductor generates no code for complex tensors: the same product in reals
        (x0, x1), (cos, sin) = pairs.unbind(-1), freqs.unbind(-1)
        rotated = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1)
    else:  # in eager mode one complex multiply runs 5-30x faster than those separate real ops
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * torch.view_as_complex(freqs))
    return rotated.flatten(-2).type_as(x)  # (B, heads, N, head_dim)


# ----------------------------------------------------------------------------
# Attention: a module (weights) and a processor (the computation), as in diffusers
# ----------------------------------------------------------------------------

class SoraAttnProcessor:
    """SDPA with optional RoPE and a mask: boolean (True = may attend), or a `BlockDiagonalMask` (packed rows)."""

    def __call__(self, attn: "SoraAttention", hidden_states, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb=None):
        q, k, v = attn.project_qkv(hidden_states, encoder_hidden_states)  # (B, N or L, D) each
        q = attn.norm_q(q).transpose(1, 2)  # (B, h, N, d)
        k = attn.norm_k(k).transpose(1, 2)  # (B, h, L, d)
        v = v.unflatten(-1, (attn.heads, -1)).transpose(1, 2)  # (B, h, L, d)
        if rotary_emb is not None:
            q, k = apply_rope(q, rotary_emb), apply_rope(k, rotary_emb)
        if isinstance(attention_mask, BlockDiagonalMask):
            out = attention_mask.attend(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)  # (B, h, N, d)
        return attn.to_out[0](out.transpose(1, 2).flatten(2))  # (B, N, D)


@dataclass
class BlockDiagonalMask:
    """Attention of each packed sample to its own keys only (xformers' BlockDiagonalMask, flash-attn's varlen).

    A dense mask over a row costs (sum of the row's lengths)^2 and masks most of it away; here the samples of
    one length are gathered into one dense batch, so a row of k samples of n tokens costs k * n^2. Measured on
    the shipped config's training batches (12 clips, rows of 640 tokens, 2 CPU threads): a step took 1.02 s with
    dense row masks, attention a quarter of it, and takes 0.69 s with this.
    Indices are into the flattened (rows * row length) queries and keys."""

    groups: list  # [(queries (G, n), keys (G, m), mask (G, 1, n, m) bool or None)], samples of equal n
    inverse: torch.Tensor  # (R * N,) each query's place in the groups' outputs, concatenated; padding -> the end

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (R, h, N, d), k and v (R, h, M, d) -> (R, h, N, d); padding queries get zeros."""
        R, h, N, d = q.shape
        q, k, v = (x.transpose(1, 2).reshape(-1, h, d) for x in (q, k, v))  # (R * N or R * M, h, d)

        def take(x, index):  # index_select, not x[index]: its backward is an index_add, not an index_put
            return x.index_select(0, index.flatten()).unflatten(0, index.shape).transpose(1, 2)  # (G, h, n, d)

        outs = []
        for queries, keys, mask in self.groups:
            out = F.scaled_dot_product_attention(take(q, queries), take(k, keys), take(v, keys), attn_mask=mask)
            outs.append(out.transpose(1, 2).reshape(-1, h, d))  # (G * n, h, d)
        outs.append(q.new_zeros(1, h, d))
        return torch.cat(outs).index_select(0, self.inverse).reshape(R, N, h, d).transpose(1, 2)  # (R, h, N, d)


class SoraAttention(nn.Module, AttentionModuleMixin):
    _default_processor_cls = SoraAttnProcessor
    _available_processors = [SoraAttnProcessor]

    def __init__(self, dim: int, heads: int, context_dim: Optional[int] = None, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.use_bias = True  # read by diffusers' fuse_projections()
        self.is_cross_attention = context_dim is not None
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(context_dim, dim)
        self.to_v = nn.Linear(context_dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        # qk-norm per head keeps attention logits bounded, which keeps training stable
        self.norm_q = _HeadRMSNorm(heads, dim // heads, eps)
        self.norm_k = _HeadRMSNorm(heads, dim // heads, eps)
        self.set_processor(self._default_processor_cls())

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None, **kwargs):
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

    def project_qkv(self, hidden_states, encoder_hidden_states=None):
        """q from the tokens, k and v from the context (the text, or the tokens themselves); one matmul for
        what `fuse_qkv_projections()` fused."""
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if self.fused_projections and not self.is_cross_attention:
            return self.to_qkv(hidden_states).chunk(3, dim=-1)
        q = self.to_q(hidden_states)
        if self.fused_projections:
            return (q, *self.to_kv(context).chunk(2, dim=-1))
        return q, self.to_k(context), self.to_v(context)


class _HeadRMSNorm(nn.Module):
    """RMSNorm over each head's channels: (B, N, heads * head_dim) -> (B, N, heads, head_dim)."""

    def __init__(self, heads: int, head_dim: int, eps: float):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.weight = nn.Parameter(torch.ones(head_dim))

    def forward(self, x):
        return F.rms_norm(x.unflatten(-1, (self.heads, -1)), self.weight.shape, self.weight, self.eps)  # (B, N, h, d)


# ----------------------------------------------------------------------------
# Transformer block: adaLN-Zero self-attention, segment-gated cross-attention, MLP
# ----------------------------------------------------------------------------

def per_frame(fn, x: torch.Tensor, token_frame, *frame_values: torch.Tensor) -> torch.Tensor:
    """fn(x, *values) where each value (B, F, D) is given per frame and x (B, N, D) per token.

    token_frame: (B, N) frame index of every token (packed rows), or an int, the tokens per frame of a
    dense t-major layout, where a (B, F, n, D) view broadcasts the values without gathering them."""
    if isinstance(token_frame, int):
        B, N, D = x.shape
        out = fn(x.reshape(B, N // token_frame, token_frame, D), *(v[:, :, None] for v in frame_values))
        return out.reshape(B, N, D)
    index = token_frame[..., None].expand(-1, -1, x.shape[-1])  # (B, N, D)
    return fn(x, *(torch.gather(v, 1, index) for v in frame_values))


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def gated(x, gate):
    return x * gate


class SoraTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn1 = SoraAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.attn2 = SoraAttention(dim, heads, context_dim=dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # zero-initialised

    def forward(self, x, frame_cond, token_frame, text, self_mask, cross_mask, rotary_emb):
        """x (B, N, D); frame_cond (B, F, D); token_frame: see `per_frame`; text (B, L, D)."""
        mod = self.adaLN_modulation(frame_cond)  # (B, F, 6D): per frame, not per token
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)  # (B, F, D) each
        h = per_frame(modulate, self.norm1(x), token_frame, shift_msa, scale_msa)
        x = x + per_frame(gated, self.attn1(h, attention_mask=self_mask, rotary_emb=rotary_emb), token_frame, gate_msa)
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=text, attention_mask=cross_mask)
        h = per_frame(modulate, self.norm3(x), token_frame, shift_mlp, scale_mlp)
        return x + per_frame(gated, self.ff(h), token_frame, gate_mlp)


# ----------------------------------------------------------------------------
# Token layout shared by the dense and the packed forward
# ----------------------------------------------------------------------------

@dataclass
class TokenLayout:
    """Where every token comes from; built once per forward, used by every block."""

    positions: torch.Tensor  # (B, N, 3) integer (t, y, x) patch coordinates
    token_frame: torch.Tensor  # (B, N) index of the token's frame in frame_cond's F axis
    self_mask: Optional[torch.Tensor | BlockDiagonalMask]  # (B, 1, N, N) bool, packed samples, or None (all to all)
    cross_mask: Optional[torch.Tensor | BlockDiagonalMask]  # (B, 1, N, L) bool, packed samples, or None (all text)
    tokens_per_frame: Optional[int] = None  # set for a dense t-major layout (equal tokens per frame)


def patch_positions(frames: int, height: int, width: int, device) -> torch.Tensor:
    """(frames * height * width, 3) integer (t, y, x) of a patch grid, in t-major order."""
    t, y, x = torch.meshgrid(torch.arange(frames, device=device), torch.arange(height, device=device),
                             torch.arange(width, device=device), indexing="ij")
    return torch.stack([t, y, x], -1).reshape(-1, 3)  # (T*Y*X, 3)


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------

class SoraTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, AttentionMixin):
    """Diffusion transformer over spacetime latent patches with per-frame timesteps
    and per-frame (storyboard) text segments. Predicts the flow-matching velocity."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["SoraTransformerBlock"]
    _skip_layerwise_casting_patterns = ["patch_embed", "norm", "time_", "pooled_"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 16,  # VAE latent channels
        out_channels: Optional[int] = None,  # defaults to in_channels (velocity has the latent's shape)
        patch_size: int = 2,  # spatial patch side, in latent pixels
        patch_size_t: int = 1,  # temporal patch length, in latent frames
        hidden_size: int = 384,
        num_layers: int = 8,
        num_attention_heads: int = 6,
        mlp_ratio: float = 4.0,
        text_embed_dim: int = 384,  # all-MiniLM-L6-v2 token states
        pooled_embed_dim: int = 384,  # its mean-pooled sentence embedding
        timestep_freq_dim: int = 256,
        rope_theta: float = 10000.0,
        max_tokens_per_row: int = 2048,  # Patch n' Pack row length
    ):
        super().__init__()
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size={hidden_size} must be divisible by num_attention_heads={num_attention_heads}")
        self.out_channels = out_channels or in_channels
        patch_dim = in_channels * patch_size_t * patch_size * patch_size
        self.patch_embed = nn.Linear(patch_dim, hidden_size)
        self.time_proj = Timesteps(timestep_freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(timestep_freq_dim, hidden_size)
        self.pooled_embed = nn.Sequential(nn.Linear(pooled_embed_dim, hidden_size), nn.SiLU(),
                                          nn.Linear(hidden_size, hidden_size))
        self.caption_projection = nn.Sequential(nn.Linear(text_embed_dim, hidden_size), nn.GELU(approximate="tanh"),
                                                nn.Linear(hidden_size, hidden_size))
        self.blocks = nn.ModuleList(
            [SoraTransformerBlock(hidden_size, num_attention_heads, mlp_ratio) for _ in range(num_layers)])
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.proj_out = nn.Linear(hidden_size, self.out_channels * patch_size_t * patch_size * patch_size)
        self.gradient_checkpointing = False
        self.apply(_init_weights)
        _zero_init_outputs(self)

    # --- inputs --------------------------------------------------------------

    def check_latent_shape(self, shape) -> None:
        c = self.config
        if len(shape) != 4 or shape[0] != c.in_channels:
            raise ValueError(f"latents shape={tuple(shape)} must be (C={c.in_channels}, F, H, W) per sample")
        _, f, h, w = shape
        if f % c.patch_size_t or h % c.patch_size or w % c.patch_size:
            raise ValueError(f"latents (F, H, W)={(f, h, w)} must be multiples of the patch "
                             f"({c.patch_size_t}, {c.patch_size}, {c.patch_size})")

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, F/pt * H/p * W/p, C * pt * p * p) in t-major order."""
        c = self.config
        B, C, Fr, H, W = latents.shape
        pt, p = c.patch_size_t, c.patch_size
        x = latents.reshape(B, C, Fr // pt, pt, H // p, p, W // p, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, F', H', W', C, pt, p, p)
        return x.reshape(B, (Fr // pt) * (H // p) * (W // p), C * pt * p * p)

    def unpatchify(self, tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """(B, N, C_out * pt * p * p) -> (B, C_out, F, H, W) for latent size (frames, height, width)."""
        c = self.config
        pt, p = c.patch_size_t, c.patch_size
        B = tokens.shape[0]
        x = tokens.reshape(B, frames // pt, height // p, width // p, self.out_channels, pt, p, p)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, F', pt, H', p, W', p)
        return x.reshape(B, self.out_channels, frames, height, width)

    def frame_conditioning(self, timestep: torch.Tensor, pooled: torch.Tensor, frame_segment_ids: torch.Tensor):
        """timestep (B, F') in [0, 1000]; pooled (B, S, P); frame_segment_ids (B, F') -> (B, F', D)."""
        B, Fr = timestep.shape
        dtype = self.dtype  # read once: ModelMixin.dtype walks every module (~0.3 ms for sora-tiny)
        t_emb = self.time_embed(self.time_proj(timestep.reshape(-1)).to(dtype)).reshape(B, Fr, -1)  # (B, F', D)
        pooled_emb = self.pooled_embed(pooled.to(dtype))  # (B, S, D)
        seg = frame_segment_ids.clamp(0, pooled.shape[1] - 1)
        return t_emb + torch.gather(pooled_emb, 1, seg[..., None].expand(-1, -1, pooled_emb.shape[-1]))

    def with_patch_size(self, patch_size: int) -> "SoraTransformer3DModel":
        """A copy with a finer spatial patch that starts from this model's weights.

        Everything but the patch embedding and the output projection is size-free and is copied. The new
        embedding reads a patch as the old one read that patch upsampled to its own size (the sum of the old
        weights over each block of pixels); the new output is the mean of the old outputs over each block.
        Finer patches give more tokens per frame (4x from 2 to 1), so a small object spans several tokens
        instead of sitting inside one."""
        old = self.config.patch_size
        if patch_size < 1 or old % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide the current patch_size={old}")
        # as a keyword: from_config skips the keys a model was built with by default, a dict entry included
        model = type(self).from_config(self.config, patch_size=patch_size)
        k, pt, c_in, c_out = old // patch_size, self.config.patch_size_t, self.config.in_channels, self.out_channels
        state = {name: value for name, value in self.state_dict().items()
                 if not name.startswith(("patch_embed.", "proj_out."))}
        w_in = self.patch_embed.weight.reshape(-1, c_in, pt, patch_size, k, patch_size, k)  # (D, C, pt, p, k, p, k)
        w_out = self.proj_out.weight.reshape(c_out, pt, patch_size, k, patch_size, k, -1)  # (C, pt, p, k, p, k, D)
        b_out = self.proj_out.bias.reshape(c_out, pt, patch_size, k, patch_size, k)
        state.update({
            "patch_embed.weight": w_in.sum(dim=(4, 6)).flatten(1), "patch_embed.bias": self.patch_embed.bias,
            "proj_out.weight": w_out.mean(dim=(3, 5)).reshape(-1, w_out.shape[-1]),
            "proj_out.bias": b_out.mean(dim=(3, 5)).flatten()})
        model.load_state_dict(state)
        return model.to(self.device)  # float32, like a freshly built model

    # --- CPU inference in int8 -----------------------------------------------

    @property
    def is_int8(self) -> bool:
        return any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in self.blocks.modules())

    def quantize_int8(self) -> "SoraTransformer3DModel":
        """For inference on an x86 CPU: the blocks' linear layers (all but a few percent of the matmuls) become
        int8 ones with weights scaled per tensor and activations per call (PyTorch's dynamic quantization, run by
        its fbgemm kernels); the embeddings and the output projection, cheap and the most sensitive to rounding,
        stay float32. In place; returns the model.

        On a 2-core AVX-512 VNNI CPU a sora-tiny step then takes 0.65-0.85x its float32 time (bench/dit_speed.py,
        on two hosts of that kind) for a ~4% difference in the velocity, and the shipped model's eval-scene
        adherence reads the same (model card). One-way: training, saving, LoRA adapters and fused projections
        need the float32 model.
        torchao's replacement for this API ran ~3x slower here in eager mode, hence torch.ao."""
        if self.is_int8:
            return self
        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise ValueError(f"quantize_int8 needs the float32 model on the CPU (it is {self.dtype} on "
                             f"{self.device}); on a GPU use torch_dtype=torch.bfloat16 instead")
        if getattr(self, "_hf_peft_config_loaded", False):
            raise ValueError("quantize_int8: this model has LoRA adapters loaded; fuse them first "
                             "(pipe.fuse_lora(), pipe.unload_lora_weights()) so the int8 weights include them")
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices; the kernels are current
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(self.blocks, {nn.Linear}, dtype=torch.qint8, inplace=True)
        return self.eval()

    @functools.wraps(ModelMixin.save_pretrained)  # its signature: DiffusionPipeline passes the keywords it names
    def save_pretrained(self, *args, **kwargs):
        if self.is_int8:
            raise ValueError("save_pretrained: this transformer was quantized to int8 for CPU inference "
                             "(quantize_int8), which is one-way; save the float32 model it was loaded from")
        return super().save_pretrained(*args, **kwargs)

    # --- the block stack, shared by both forwards ----------------------------

    def _run(self, tokens, frame_cond, text, layout: TokenLayout):
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        rotary_emb = rope_frequencies(layout.positions, head_dim, self.config.rope_theta)[:, None]  # (B, 1, N, d/2, 2)
        x = self.patch_embed(tokens)  # (B, N, D)
        text = self.caption_projection(text.to(frame_cond.dtype))  # (B, L, D)
        token_frame = layout.tokens_per_frame or layout.token_frame
        for block in self.blocks:
            args = (x, frame_cond, token_frame, text, layout.self_mask, layout.cross_mask, rotary_emb)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, *args)
            else:
                x = block(*args)
        shift, scale = self.adaLN_out(frame_cond).chunk(2, dim=-1)  # (B, F, D) each
        return self.proj_out(per_frame(modulate, self.norm_out(x), token_frame, shift, scale))  # (B, N, C_out * pt * p * p)

    # --- dense forward: a batch of same-size latents --------------------------

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        pooled_projections: Optional[torch.Tensor] = None,
        frame_segment_ids: Optional[torch.Tensor] = None,
        text_segment_ids: Optional[torch.Tensor] = None,
        attention_kwargs: Optional[dict[str, Any]] = None,
        return_dict: bool = True,
    ):
        """
        hidden_states: (B, C, F, H, W) noisy latents.
        timestep: (B,) one timestep per sample, or (B, F) one per latent frame, in [0, 1000].
        encoder_hidden_states: (B, L, text_embed_dim) text token states (all segments concatenated).
        encoder_attention_mask: (B, L) 1 for real tokens, 0 for padding.
        pooled_projections: (B, pooled_embed_dim) or (B, S, pooled_embed_dim), one per text segment
            (default: the mean of each segment's token states).
        frame_segment_ids: (B, F) which text segment covers each latent frame (default: 0).
        text_segment_ids: (B, L) which segment each text token belongs to (default: 0).
        Returns the velocity (B, C_out, F, H, W) as `Transformer2DModelOutput(sample)`.

        Lists instead of tensors (one entry per sample, any sizes) take the packed path, so a
        training loop can call the module itself (hooks, DDP) for Patch n' Pack; see `forward_packed`.
        """
        if isinstance(hidden_states, (list, tuple)):
            sample = self.forward_packed(hidden_states, timestep, encoder_hidden_states, pooled_projections,
                                         frame_segment_ids, text_segment_ids)
            return Transformer2DModelOutput(sample=sample) if return_dict else (sample,)
        B, C, Fr, H, W = hidden_states.shape
        self.check_latent_shape(hidden_states.shape[1:])
        device = hidden_states.device
        L = encoder_hidden_states.shape[1]
        timestep = _per_frame(timestep, B, Fr, "timestep").to(device)
        frame_seg = (torch.zeros(B, Fr, dtype=torch.long, device=device) if frame_segment_ids is None
                     else frame_segment_ids.to(device).long())
        text_seg = (torch.zeros(B, L, dtype=torch.long, device=device) if text_segment_ids is None
                    else text_segment_ids.to(device).long())
        text_valid = (torch.ones(B, L, dtype=torch.bool, device=device) if encoder_attention_mask is None
                      else encoder_attention_mask.to(device).bool())
        pooled = _segments_pooled(pooled_projections, encoder_hidden_states, text_valid, text_seg)

        pt, p = self.config.patch_size_t, self.config.patch_size
        Fp, Hp, Wp = Fr // pt, H // p, W // p
        positions = patch_positions(Fp, Hp, Wp, device).expand(B, -1, -1)  # (B, N, 3)
        token_frame = positions[..., 0]  # (B, N)
        patch_frame_seg = frame_seg[:, ::pt]  # (B, F')
        # one segment and no padding (plain text->video) needs no mask, and SDPA is faster without one
        cross_mask = None
        if encoder_attention_mask is not None or frame_segment_ids is not None or text_segment_ids is not None:
            token_seg = torch.gather(patch_frame_seg, 1, token_frame)  # (B, N)
            mask = (token_seg[:, :, None] == text_seg[:, None, :]) & text_valid[:, None, :]  # (B, N, L)
            # an all-true mask is dropped too, except under torch.compile: a branch on its values would break the
            # graph, and keeping it gives the same result
            if torch.compiler.is_compiling() or not mask.all():
                cross_mask = _never_empty(mask)[:, None]
        layout = TokenLayout(positions, token_frame, None, cross_mask, tokens_per_frame=Hp * Wp)
        frame_cond = self.frame_conditioning(timestep[:, ::pt], pooled, patch_frame_seg)
        out = self._run(self.patchify(hidden_states), frame_cond, encoder_hidden_states, layout)
        sample = self.unpatchify(out, Fr, H, W)
        return Transformer2DModelOutput(sample=sample) if return_dict else (sample,)

    # --- packed forward: NaViT's Patch n' Pack --------------------------------

    def forward_packed(
        self,
        latents: list[torch.Tensor],
        timesteps: list[torch.Tensor],
        encoder_hidden_states: list[torch.Tensor],
        pooled_projections: list[torch.Tensor],
        frame_segment_ids: Optional[list[torch.Tensor]] = None,
        text_segment_ids: Optional[list[torch.Tensor]] = None,
        max_tokens_per_row: Optional[int] = None,
    ) -> list[torch.Tensor]:
        """One call for samples of different sizes and durations.

        latents[i]: (C, F_i, H_i, W_i); timesteps[i]: (F_i,) or scalar; encoder_hidden_states[i]: (L_i, E)
        (real tokens only); pooled_projections[i]: (S_i, P) or (P,); frame_segment_ids[i]: (F_i,);
        text_segment_ids[i]: (L_i,). Returns [(C_out, F_i, H_i, W_i)] in input order.
        """
        n = len(latents)
        if not (len(timesteps) == len(encoder_hidden_states) == len(pooled_projections) == n) or n == 0:
            raise ValueError("forward_packed: latents, timesteps, encoder_hidden_states and pooled_projections "
                             f"must be non-empty lists of equal length, got {n}, {len(timesteps)}, "
                             f"{len(encoder_hidden_states)}, {len(pooled_projections)}")
        c = self.config
        pt, p = c.patch_size_t, c.patch_size
        device = latents[0].device
        max_tokens = max_tokens_per_row or c.max_tokens_per_row
        items = []
        for i, z in enumerate(latents):
            self.check_latent_shape(z.shape)
            _, Fr, H, W = z.shape
            Fp, Hp, Wp = Fr // pt, H // p, W // p
            items.append(dict(
                tokens=self.patchify(z[None])[0], positions=patch_positions(Fp, Hp, Wp, device),
                timestep=_per_frame(timesteps[i], 1, Fr, f"timesteps[{i}]")[0, ::pt].to(device),
                pooled=pooled_projections[i].reshape(-1, c.pooled_embed_dim),
                text=encoder_hidden_states[i],
                frame_seg=(torch.zeros(Fr, dtype=torch.long, device=device) if frame_segment_ids is None
                           else frame_segment_ids[i].to(device).long())[::pt],
                text_seg=(torch.zeros(len(encoder_hidden_states[i]), dtype=torch.long, device=device)
                          if text_segment_ids is None else text_segment_ids[i].to(device).long()),
                shape=(Fr, H, W)))

        rows = pack_rows([len(it["tokens"]) for it in items], max_tokens)
        tokens, frame_cond, text, layout, spans = self._pack(items, rows, device)
        out = self._run(tokens, frame_cond, text, layout)  # (R, N, patch)
        results: list[Optional[torch.Tensor]] = [None] * n
        for i, (row, start, length) in spans.items():
            results[i] = self.unpatchify(out[row:row + 1, start:start + length], *items[i]["shape"])[0]
        return results

    def _pack(self, items, rows, device):
        """Lay samples out in rows (padding at each row's end) and say which tokens and text each one owns."""
        R = len(rows)
        N = max(sum(len(items[i]["tokens"]) for i in row) for row in rows)
        Fmax = max(sum(len(items[i]["timestep"]) for i in row) for row in rows)
        L = max(sum(len(items[i]["text"]) for i in row) for row in rows)
        D_in = items[0]["tokens"].shape[-1]
        tokens = torch.zeros(R, N, D_in, device=device, dtype=items[0]["tokens"].dtype)
        positions = torch.zeros(R, N, 3, dtype=torch.long, device=device)
        token_frame = torch.zeros(R, N, dtype=torch.long, device=device)
        timestep = torch.zeros(R, Fmax, device=device)
        frame_pooled = torch.zeros(R, Fmax, 1, self.config.pooled_embed_dim, device=device)
        text = torch.zeros(R, L, items[0]["text"].shape[-1], device=device)
        spans, text_starts = {}, {}
        for r, row in enumerate(rows):
            n0 = f0 = l0 = 0
            for i in row:
                it = items[i]
                n, nf, nl = len(it["tokens"]), len(it["timestep"]), len(it["text"])
                tokens[r, n0:n0 + n] = it["tokens"]
                positions[r, n0:n0 + n] = it["positions"]
                token_frame[r, n0:n0 + n] = it["positions"][:, 0] + f0
                timestep[r, f0:f0 + nf] = it["timestep"]
                seg = it["frame_seg"].clamp(0, len(it["pooled"]) - 1)
                frame_pooled[r, f0:f0 + nf, 0] = it["pooled"][seg]
                text[r, l0:l0 + nl] = it["text"]
                spans[i], text_starts[i] = (r, n0, n), r * L + l0
                n0, f0, l0 = n0 + n, f0 + nf, l0 + nl
        self_mask, cross_mask = _sample_masks(items, spans, text_starts, R * N, N, device)
        # each frame already holds its own segment's pooled text, so frame f is "segment" f here
        frame_ids = torch.arange(Fmax, device=device).expand(R, -1)
        frame_cond = self.frame_conditioning(timestep, frame_pooled.squeeze(2), frame_ids)  # (R, Fmax, D)
        layout = TokenLayout(positions, token_frame, self_mask, cross_mask)
        return tokens, frame_cond, text, layout, spans


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def pack_rows(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """First-fit-decreasing bin packing of samples (by token count) into rows.

    A sample longer than max_tokens gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_tokens - lengths[i])
    return rows


def _sample_masks(items, spans, text_starts, num_slots: int, row_length: int, device):
    """Self- and cross-attention of packed samples as `BlockDiagonalMask`s: samples grouped by token count;
    each token sees its own sample's tokens, and its own sample's text of its frame's segment."""
    by_length: dict[int, list[int]] = {}
    for i, (_, _, n) in spans.items():
        by_length.setdefault(n, []).append(i)
    self_groups, cross_groups = [], []
    for n, members in by_length.items():
        queries = torch.stack([r * row_length + n0 + torch.arange(n, device=device)
                               for r, n0, _ in (spans[i] for i in members)])  # (G, n)
        m = max(len(items[i]["text"]) for i in members)
        keys = torch.stack([text_starts[i] + torch.arange(m, device=device).clamp(max=len(items[i]["text"]) - 1)
                            for i in members])  # (G, m); short texts repeat their last token, masked out below
        sees = torch.stack([
            (items[i]["frame_seg"][items[i]["positions"][:, 0]][:, None] == _padded(items[i]["text_seg"], m, -1))
            for i in members])  # (G, n, m)
        self_groups.append((queries, queries, None))
        cross_groups.append((queries, keys, None if sees.all() else _never_empty(sees)[:, None]))
    placed = torch.cat([queries.flatten() for queries, _, _ in self_groups])
    inverse = torch.full((num_slots,), len(placed), dtype=torch.long, device=device)  # padding -> the zero row
    inverse[placed] = torch.arange(len(placed), device=device)
    return BlockDiagonalMask(self_groups, inverse), BlockDiagonalMask(cross_groups, inverse)


def _padded(x: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return torch.cat([x, x.new_full((length - len(x),), value)])


def _per_frame(timestep, batch: int, frames: int, name: str) -> torch.Tensor:
    """A scalar, (B,) or (B, F) timestep -> (B, F) float."""
    t = torch.as_tensor(timestep, dtype=torch.float32)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim == 1 and t.shape[0] == frames and batch == 1 and frames != 1:
        t = t[None]
    if t.ndim == 1:
        t = t[:, None].expand(-1, frames)
    if t.shape != (batch, frames):
        raise ValueError(f"{name} shape={tuple(t.shape)} must be (), ({batch},) or ({batch}, {frames}) "
                         "(one timestep per sample or per latent frame)")
    return t


def _segments_pooled(pooled, text, valid, text_seg) -> torch.Tensor:
    """(B, S, P) pooled text per segment; when not given, the mean of each segment's real tokens."""
    if pooled is not None:
        return pooled if pooled.ndim == 3 else pooled[:, None]
    num_segments = int(text_seg.max()) + 1
    member = F.one_hot(text_seg, num_segments).to(text.dtype) * valid[..., None].to(text.dtype)  # (B, L, S)
    return member.transpose(1, 2) @ text / member.sum(1)[..., None].clamp(min=1)  # (B, S, E)


def _never_empty(mask: torch.Tensor) -> torch.Tensor:
    """SDPA gives NaN for a query that may attend to nothing (a frame whose segment has no text tokens); let
    such queries see key 0, so that nothing downstream turns NaN."""
    empty = ~mask.any(-1, keepdim=True)  # (..., 1)
    return torch.cat([mask[..., :1] | empty, mask[..., 1:]], dim=-1)  # no branch on values: compiles as one graph


def _init_weights(module: nn.Module) -> None:
    """DiT's initialisation: xavier-uniform linears, zero biases, small time-embedding weights."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, TimestepEmbedding):
        for layer in (module.linear_1, module.linear_2):
            nn.init.normal_(layer.weight, std=0.02)


def _zero_init_outputs(model: SoraTransformer3DModel) -> None:
    """adaLN-Zero: every residual branch and the output start at zero, so the
    untrained network is the identity plus a zero velocity."""
    for block in model.blocks:
        nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(block.attn2.to_out[0].weight)  # cross-attention has no gate: start it at zero
        nn.init.zeros_(block.attn2.to_out[0].bias)
    nn.init.zeros_(model.adaLN_out[-1].weight)
    nn.init.zeros_(model.adaLN_out[-1].bias)
    nn.init.zeros_(model.proj_out.weight)
    nn.init.zeros_(model.proj_out.bias)
