"""sora-hf studio: the Gradio app (and Hugging Face Space) for making videos.

    sora-hf app --model pipelines/sora-tiny --library outputs/library

A creation bar (prompt, aspect ratio, resolution tier, duration, 1-4
variations, seed, advanced steps / guidance / negative prompt), Generate with
a progress bar driven by the pipeline's per-step callback, Cancel, and a
library of every finished result that survives restarts.

How it fits together, and why:
- `Studio` does the work with no Gradio in sight (validate, run the pipeline,
  save to the `Library`, make display copies), so the UI and the API are thin
  and share one code path. `build_demo(pipe, library)` wires it to Gradio.
- Named API endpoints for `gradio_client`: `/generate`, `/library`, `/entry`,
  `/delete`. `/generate` goes through the queue (one job at a time by default,
  at most `max_queue` waiting: a full queue answers "Queue is full! Please try
  again." in gradio_client, "This application is currently busy. Please try
  again." in the browser); the library events run outside the queue's
  concurrency limit, so browsing never waits behind a generation.
- Cancel really stops the loop: cancelling the Gradio event (the Cancel
  button, or `Job.cancel()` from gradio_client) raises CancelledError in the
  async handler, which sets a flag that the per-step callback turns into
  `pipe._interrupt = True`. A cancelled job saves nothing.
- The library keeps the native file (64 px is what the model makes); the
  browser gets a copy upscaled by an integer nearest-neighbour factor, so what
  is shown is exactly what was generated, only bigger and not blurred.
- Nothing is downloaded at run time: no analytics, system fonts, no examples
  run at start-up. On a ZeroGPU Space the denoising runs under `spaces.GPU`
  when that package is installed; without it the decorator is a no-op.
"""

# No `from __future__ import annotations` here: Gradio reads the handlers' annotations at run time
# (`evt: gr.SelectData`), and string annotations would hide them.
import argparse
import asyncio
import functools
import math
import secrets
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .library import Entry, Library
from .shapeworld import ASPECT_RATIOS, DURATIONS, FPS

# ----------------------------------------------------------------------------
# Settings the studio offers
# ----------------------------------------------------------------------------

ASPECT_CHOICES = ["16:9", "1:1", "9:16"]
TIER_CHOICES = [("Standard (64 px)", 1), ("High (128 px)", 2)]  # tier 2 doubles both sides
DURATION_CHOICES = [("Image", "image"), ("~2 s", "2s"), ("~4 s", "4s"), ("~8 s", "8s")]
MAX_PROMPT_CHARS = 500  # the text encoder reads 128 tokens; this is a generous bound on that
MAX_VARIATIONS = 4
MAX_SEED = 2**31 - 1
MAX_STEPS = 100
GUIDANCE_RANGE = (1.0, 15.0)
DEFAULT_MAX_QUEUE = 8
DISPLAY_SHORT_SIDE = 256  # display copies are upscaled until the short side reaches at least this
RESULT_HEIGHT = 360  # px: a player per variation, side by side
LIBRARY_PAGE = 60  # entries shown in the library gallery (the API can page through all)
INT8_HELP = ("on a CPU, run the DiT's blocks in int8: 0.65-0.85x the step time, the same adherence on eval "
             "scenes, frames not bit-identical to float32")

EXAMPLES = [
    ["a red ball bouncing on sand", "16:9", "2s"],
    ["a blue square sliding left on a black background", "1:1", "4s"],
    ["a yellow triangle spinning on sky", "9:16", "2s"],
    ["a white ball falling, pixel art style", "16:9", "image"],
]


class Cancelled(Exception):
    """The job was cancelled before it finished; nothing was saved."""


def gpu(fn: Callable) -> Callable:
    """`spaces.GPU` on a ZeroGPU Space; the function unchanged where `spaces` is not installed."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(duration=120)(fn)


@gpu
def run_pipeline(pipe, **kwargs):
    """The one call that needs the accelerator (kept tiny for `spaces.GPU`)."""
    return pipe(**kwargs)


# ----------------------------------------------------------------------------
# A validated request
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationRequest:
    """What one press of Generate asks for; `make_request` builds it from UI/API values."""

    prompt: str
    aspect_ratio: str = "16:9"
    tier: int = 1
    duration: str = "2s"
    variations: int = 1
    seed: int = 0
    steps: int = 20
    guidance: float = 4.0
    negative_prompt: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        height, width = ASPECT_RATIOS[self.aspect_ratio]
        return height * self.tier, width * self.tier

    @property
    def num_frames(self) -> int:
        return DURATIONS[self.duration]

    @property
    def seeds(self) -> list[int]:
        """Variation k uses seed + k, so every entry can be remade alone from its own seed."""
        return [self.seed + k for k in range(self.variations)]


def make_request(prompt: Any, aspect_ratio: Any = "16:9", tier: Any = 1, duration: Any = "2s", variations: Any = 1,
                 seed: Any = 0, randomize_seed: bool = False, steps: Any = 20, guidance: Any = 4.0,
                 negative_prompt: Any = "") -> GenerationRequest:
    """Check every value and name the bad one and what is allowed (the API can send anything)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt={prompt!r} is empty: describe the video, e.g. 'a red ball bouncing on sand'")
    prompt = " ".join(prompt.split())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are allowed")
    if aspect_ratio not in ASPECT_CHOICES:
        raise ValueError(f"aspect_ratio={aspect_ratio!r} is not supported; choose one of {ASPECT_CHOICES}")
    tiers = [value for _, value in TIER_CHOICES]
    tier = _as_int("resolution tier", tier, min(tiers), max(tiers))
    if duration not in DURATIONS:
        raise ValueError(f"duration={duration!r} is not supported; choose one of {list(DURATIONS)}")
    variations = _as_int("variations", variations, 1, MAX_VARIATIONS)
    seed = secrets.randbelow(MAX_SEED + 1) if randomize_seed else _as_int("seed", seed, 0, MAX_SEED)
    steps = _as_int("steps", steps, 1, MAX_STEPS)
    guidance = _as_float("guidance", guidance, *GUIDANCE_RANGE)
    if not isinstance(negative_prompt, (str, type(None))):
        raise ValueError(f"negative_prompt={negative_prompt!r} must be text (or empty)")
    negative_prompt = " ".join((negative_prompt or "").split())
    if len(negative_prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"negative_prompt is {len(negative_prompt)} characters long; at most {MAX_PROMPT_CHARS} "
                         "are allowed")
    if negative_prompt and guidance <= 1.0:
        raise ValueError(f"a negative prompt needs guidance > 1 (guidance={guidance} turns classifier-free guidance "
                         "off, so the negative prompt would be ignored)")
    return GenerationRequest(prompt, aspect_ratio, tier, duration, variations, seed, steps, guidance, negative_prompt)


def _as_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name}={value!r} must be a whole number from {lo} to {hi}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name}={int(value)} is out of range; allowed {lo} to {hi}")
    return int(value)


def _as_float(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} must be a number from {lo} to {hi}")
    return float(value)


def display_factor(height: int, width: int) -> int:
    """The integer nearest-neighbour upscale that brings the short side to DISPLAY_SHORT_SIDE."""
    return max(1, math.ceil(DISPLAY_SHORT_SIDE / min(height, width)))


# ----------------------------------------------------------------------------
# The studio: generation, library and display copies, without Gradio
# ----------------------------------------------------------------------------

class Studio:
    """One pipeline and one library, shared by every user of the app.

    A lock serialises pipeline calls: the pipeline keeps per-call state (its
    prompt, guidance, interrupt flag), so two calls must never overlap, whatever
    the queue's concurrency.
    """

    def __init__(self, pipe, library: Library, model_name: str = "sora-hf", display_dir: Optional[Path] = None):
        self.pipe = pipe
        self.library = library
        self.model_name = model_name
        self._lock = threading.Lock()
        if display_dir is None:
            self._display_tmp = tempfile.TemporaryDirectory(prefix="sora-hf-display-")
            display_dir = Path(self._display_tmp.name)
        self.display_dir = Path(display_dir)
        self.display_dir.mkdir(parents=True, exist_ok=True)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)  # the UI has its own progress bar

    def generate(self, request: GenerationRequest, on_step: Optional[Callable[[int, int], None]] = None,
                 cancel: Optional[threading.Event] = None) -> list[Entry]:
        """Run the pipeline for every variation at once, then save each to the library.

        on_step(done, total) is called after each denoising step; setting `cancel`
        stops the loop at the next step and raises Cancelled (nothing is saved)."""
        frames = self._denoise(request, on_step, cancel)  # (V, F, H, W, 3) in [0, 1]
        entries = []
        for k, clip in enumerate(frames):
            entry = self.library.add(clip, prompt=request.prompt, negative_prompt=request.negative_prompt,
                                     seed=request.seeds[k], model=self.model_name, fps=FPS,
                                     settings=self._settings(request, k))
            self._write_display_copies(entry, clip)
            entries.append(entry)
        return entries

    def _denoise(self, request: GenerationRequest, on_step, cancel) -> np.ndarray:
        import torch

        height, width = request.size
        generators = [torch.Generator("cpu").manual_seed(s) for s in request.seeds]
        steps_done = 0

        def callback(pipe, i, t, kwargs):
            nonlocal steps_done
            steps_done = i + 1
            if cancel is not None and cancel.is_set():
                pipe._interrupt = True  # the pipeline checks this before the next step
            elif on_step is not None:
                on_step(steps_done, request.steps)
            return kwargs

        with self._lock:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled before it started; nothing was saved")
            output = run_pipeline(self.pipe, prompt=request.prompt, negative_prompt=request.negative_prompt or None,
                                  height=height, width=width, num_frames=request.num_frames,
                                  num_inference_steps=request.steps, guidance_scale=request.guidance,
                                  num_videos_per_prompt=request.variations, generator=generators,
                                  output_type="np", callback_on_step_end=callback)
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled after step {steps_done} of {request.steps}; nothing was saved")
        return np.asarray(output.frames)

    def _settings(self, request: GenerationRequest, variation: int) -> dict:
        settings = asdict(request)
        for key in ("prompt", "negative_prompt", "seed"):  # columns of their own
            settings.pop(key)
        settings.update(variation=variation + 1, base_seed=request.seed)
        return settings

    # -- display copies (what the browser gets) -------------------------

    def display_path(self, entry: Entry) -> Path:
        """An upscaled copy of the entry for the browser (mp4, or png for an image), made once."""
        path = self.display_dir / f"{entry.id}{entry.path.suffix}"
        if not path.exists():
            from .video_io import read_video

            self._write_display_copies(entry, read_video(entry.path))
        return path

    def thumbnail_path(self, entry: Entry) -> Path:
        """A PNG of the middle frame, upscaled, for the library gallery."""
        path = self.display_dir / f"{entry.id}.thumb.png"
        if not path.exists():
            self.display_path(entry)
        return path

    def _write_display_copies(self, entry: Entry, frames) -> None:
        from .video_io import to_uint8_frames, write_video

        frames = to_uint8_frames(frames)
        factor = display_factor(entry.height, entry.width)
        write_video(self.display_dir / f"{entry.id}{entry.path.suffix}", frames, fps=entry.fps, upscale=factor,
                    preset="veryfast")
        write_video(self.display_dir / f"{entry.id}.thumb.png", frames[len(frames) // 2], upscale=factor)

    def forget_display_copies(self, entry: Entry) -> None:
        for path in (self.display_dir / f"{entry.id}{entry.path.suffix}", self.display_dir / f"{entry.id}.thumb.png"):
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------
# Text for the UI
# ----------------------------------------------------------------------------

def describe_entry(entry: Entry) -> str:
    """The details panel: everything needed to understand or remake the entry."""
    s = entry.settings
    what = "image" if entry.is_image else f"{entry.num_frames} frames at {entry.fps:g} fps ({entry.duration_s:.1f} s)"
    lines = [f"**{entry.prompt}**", "",
             f"- id: `{entry.id}`",
             f"- created: {entry.created_iso}",
             f"- {entry.width}×{entry.height} px, {what}",
             f"- seed: {entry.seed}" + (f" (variation {s['variation']} of {s['variations']})"
                                        if s.get("variations", 1) > 1 else ""),
             f"- steps: {s.get('steps', '?')}, guidance: {s.get('guidance', '?')}",
             f"- model: {entry.model}"]
    if entry.negative_prompt:
        lines.append(f"- negative prompt: {entry.negative_prompt}")
    if entry.parent_id:
        lines.append(f"- made from: `{entry.parent_id}`")
    return "\n".join(lines)


def describe_result(entries: list[Entry], elapsed_s: float) -> str:
    first = entries[0]
    seeds = ", ".join(str(e.seed) for e in entries)
    what = "image" if first.is_image else f"{first.num_frames} frames ({first.duration_s:.1f} s)"
    plural = "s" if len(entries) > 1 else ""
    return (f"Done in {elapsed_s:.1f} s: {len(entries)} variation{plural}, {first.width}×{first.height} px, {what}. "
            f"Seed used: **{first.seed}** (variation seed{plural}: {seeds}). Saved to the library.")


# ----------------------------------------------------------------------------
# Gradio
# ----------------------------------------------------------------------------

CSS = """
#library-gallery img, .pixelated img, .pixelated video { image-rendering: pixelated; }
#library-gallery .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
@media (max-width: 720px) { #library-gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; } }
#status { min-height: 1.5em; }
"""
FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]  # no web-font downloads
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "monospace"]


def build_demo(pipe, library: Library, model_name: str = "sora-hf", max_queue: int = DEFAULT_MAX_QUEUE,
               concurrency: int = 1):
    """The studio as a `gr.Blocks`; launch it with `launch(demo)`, which allows the library folder."""
    import gradio as gr

    if not isinstance(max_queue, int) or max_queue < 1:
        raise ValueError(f"max_queue={max_queue!r} must be an integer >= 1")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency={concurrency!r} must be an integer >= 1")
    studio = Studio(pipe, library, model_name)

    def shown_errors(fn):
        """Our ValueErrors (bad input, unknown id, damaged library) become gr.Error, whose message
        reaches the browser and gradio_client; any other exception stays a bug with a traceback."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as error:
                raise gr.Error(str(error), print_exception=False) from None
        return wrapper

    # -- handlers ------------------------------------------------------

    async def generate(prompt, aspect_ratio, resolution_tier, duration, variations, seed, randomize_seed, steps,
                       guidance, negative_prompt, progress=gr.Progress()):
        """Generate 1-4 variations and save them to the library.

        Returns the native files (mp4, or png for an image) and a record with the seed used and the new entries."""
        try:
            request = make_request(prompt, aspect_ratio, resolution_tier, duration, variations, seed,
                                   randomize_seed, steps, guidance, negative_prompt)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None
        progress((0, request.steps), desc="Denoising", unit="steps")
        cancel = threading.Event()
        started = time.perf_counter()
        try:  # a worker thread, so that cancelling this task (Cancel button, Job.cancel) reaches us at once
            entries = await asyncio.to_thread(
                studio.generate, request, lambda done, total: progress((done, total), desc="Denoising",
                                                                       unit="steps"), cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at its next step and saves nothing
            raise
        except Cancelled as error:
            raise gr.Error(f"Cancelled: {error}", print_exception=False) from None
        except ValueError as error:  # bad settings the pipeline caught, or a library problem
            raise gr.Error(str(error), print_exception=False) from None
        elapsed = time.perf_counter() - started
        record = {"seed": request.seed, "seeds": request.seeds, "elapsed_s": round(elapsed, 3),
                  "entries": [e.to_dict() for e in entries]}
        return [str(e.path) for e in entries], record

    @shown_errors
    def show_results(record):
        """Fill one slot per variation with its display copy (a player, or an image)."""
        entries = [library.get(e["id"]) for e in record["entries"]]
        updates = []
        for k in range(MAX_VARIATIONS):
            entry = entries[k] if k < len(entries) else None
            image = entry is not None and entry.is_image
            shown = None if entry is None else str(studio.display_path(entry))
            updates += [gr.update(visible=k == 0 or entry is not None),
                        gr.update(value=None if image else shown, visible=not image),
                        gr.update(value=shown if image else None, visible=image)]
        return [*updates, describe_result(entries, record["elapsed_s"]), record["seed"]]

    @shown_errors
    def refresh_library():
        entries = library.list(limit=LIBRARY_PAGE)
        total = len(library)
        items = [(str(studio.thumbnail_path(e)), _caption(e)) for e in entries]
        shown = f" (newest {len(entries)} shown)" if total > len(entries) else ""
        return items, [e.id for e in entries], f"{total} entr{'y' if total == 1 else 'ies'} in the library{shown}."

    @shown_errors
    def select_entry(ids, evt: gr.SelectData):
        if not ids or evt.index is None or evt.index >= len(ids):
            return _empty_viewer()
        return _viewer(library.get(ids[evt.index]))

    def _viewer(entry: Entry):
        shown = str(studio.display_path(entry))
        return (gr.update(value=None if entry.is_image else shown, visible=not entry.is_image),
                gr.update(value=shown if entry.is_image else None, visible=entry.is_image),
                describe_entry(entry), str(entry.path), entry.id,
                gr.update(interactive=True), gr.update(interactive=True))

    def _empty_viewer():
        return (gr.update(value=None, visible=True), gr.update(value=None, visible=False),
                "Select an entry to see its details.", None, None,
                gr.update(interactive=False), gr.update(interactive=False))

    @shown_errors
    def delete_selected(entry_id):
        if entry_id:
            studio.forget_display_copies(library.delete(entry_id))
        return _empty_viewer()

    @shown_errors
    def reuse_settings(entry_id):
        entry = library.get(entry_id)
        s = entry.settings
        return (entry.prompt, s.get("aspect_ratio", "16:9"), s.get("tier", 1), s.get("duration", "2s"), 1,
                entry.seed, False, s.get("steps", 20), s.get("guidance", 4.0), entry.negative_prompt,
                gr.Tabs(selected="create"))

    @shown_errors
    def api_library(limit):
        """Library entries, newest first (at most `limit`; 0 = all)."""
        limit = _as_int("limit", limit, 0, 10**9)
        return [e.to_dict() for e in library.list(limit=limit or None)]

    @shown_errors
    def api_entry(entry_id):
        """One entry: its native file (mp4 or png) and its record."""
        entry = library.get(entry_id)
        return str(entry.path), entry.to_dict()

    @shown_errors
    def api_delete(entry_id):
        """Delete an entry (its file and its row); returns the deleted record."""
        entry = library.delete(entry_id)
        studio.forget_display_copies(entry)
        return {"deleted": entry.to_dict()}

    def cancel_note():
        return "Cancelling: the job stops at the next step and nothing is saved."

    # -- layout ----------------------------------------------------------

    with gr.Blocks(title="sora-hf studio", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("## sora-hf studio\nText to video with a small Sora-style diffusion transformer "
                    f"(model: `{model_name}`). Every result is saved to the library.")
        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create"):
                with gr.Row(equal_height=True):
                    prompt = gr.Textbox(label="Prompt", placeholder="a red ball bouncing on sand", lines=2,
                                        max_lines=4, scale=6, elem_id="prompt")
                    with gr.Column(scale=1, min_width=140):
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Row():
                    aspect = gr.Radio(ASPECT_CHOICES, value="16:9", label="Aspect ratio", elem_id="aspect")
                    tier = gr.Radio(TIER_CHOICES, value=1, label="Resolution", elem_id="tier")
                    duration = gr.Radio(DURATION_CHOICES, value="2s", label="Duration", elem_id="duration")
                with gr.Row():
                    variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, precision=0, label="Variations",
                                           elem_id="variations")
                    seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed")
                    randomize = gr.Checkbox(True, label="Randomise seed", elem_id="randomize")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, value=20, step=1, precision=0, label="Steps")
                        guidance = gr.Slider(*GUIDANCE_RANGE, value=4.0, step=0.5, label="Guidance")
                    negative = gr.Textbox("", label="Negative prompt", placeholder="what to steer away from")
                status = gr.Markdown(elem_id="status")
                slots, slot_videos, slot_images = [], [], []
                with gr.Row():
                    for k in range(MAX_VARIATIONS):
                        with gr.Column(visible=k == 0, min_width=200) as slot:
                            slot_videos.append(gr.Video(label=f"Variation {k + 1}", autoplay=True, loop=True,
                                                        interactive=False, height=RESULT_HEIGHT,
                                                        elem_id=f"result-video-{k}", elem_classes="pixelated"))
                            slot_images.append(gr.Image(label=f"Variation {k + 1}", visible=False, interactive=False,
                                                        height=RESULT_HEIGHT, elem_id=f"result-image-{k}",
                                                        elem_classes="pixelated"))
                        slots.append(slot)
                with gr.Accordion("Native files and record (what /generate returns)", open=False):
                    files = gr.File(label="Native files", file_count="multiple", interactive=False)
                    record = gr.JSON(label="Record")
                gr.Examples(EXAMPLES, inputs=[prompt, aspect, duration], cache_examples=False,
                            label="Examples (click to fill in the prompt)")
            with gr.Tab("Library", id="library") as library_tab:
                with gr.Row():
                    library_count = gr.Markdown(elem_id="library-count")
                    refresh_btn = gr.Button("Refresh", size="sm", scale=0, min_width=100)
                with gr.Row():
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(label="Library (newest first)", show_label=False, columns=4, height="auto",
                                             allow_preview=False, object_fit="contain", elem_id="library-gallery")
                    with gr.Column(scale=2):
                        entry_video = gr.Video(label="Selected", autoplay=True, loop=True, interactive=False,
                                               height=RESULT_HEIGHT, elem_id="entry-video", elem_classes="pixelated")
                        entry_image = gr.Image(label="Selected", visible=False, interactive=False,
                                               height=RESULT_HEIGHT, elem_id="entry-image", elem_classes="pixelated")
                        entry_details = gr.Markdown("Select an entry to see its details.", elem_id="entry-details")
                        entry_file = gr.File(label="Native file", interactive=False)
                        with gr.Row():
                            reuse_btn = gr.Button("Reuse settings", interactive=False, elem_id="reuse")
                            delete_btn = gr.Button("Delete", variant="stop", interactive=False, elem_id="delete")
        entry_ids = gr.State([])
        selected_id = gr.State(None)

        # API-only endpoints: hidden components, so gradio_client gets real files and typed values
        with gr.Group(visible=False):
            api_limit = gr.Number(LIBRARY_PAGE, precision=0, label="limit")
            api_id = gr.Textbox(label="entry_id")
            api_file = gr.File(label="file")
            api_json = gr.JSON(label="record")
            api_list_btn, api_entry_btn, api_delete_btn = gr.Button(), gr.Button(), gr.Button()

        # -- events ------------------------------------------------------

        creation_inputs = [prompt, aspect, tier, duration, variations, seed, randomize, steps, guidance, negative]
        viewer = [entry_video, entry_image, entry_details, entry_file, selected_id, reuse_btn, delete_btn]
        private = dict(api_visibility="private")
        library_outputs = [gallery, entry_ids, library_count]
        generate_events = []
        for trigger, name in ((generate_btn.click, "generate"), (prompt.submit, "generate_on_enter")):
            trigger(None, None, status, js="() => ''")  # clear the last job's status at once, in the browser
            event = trigger(generate, creation_inputs, [files, record], api_name=name,
                            api_visibility="public" if name == "generate" else "private",
                            concurrency_limit=concurrency, concurrency_id="generate",
                            show_progress_on=[slot_videos[0]])
            event.success(show_results, [record], [c for k in range(MAX_VARIATIONS)
                                                  for c in (slots[k], slot_videos[k], slot_images[k])]
                          + [status, seed], queue=False, **private) \
                .then(refresh_library, None, library_outputs, queue=False, **private)
            generate_events.append(event)
        cancel_btn.click(cancel_note, None, status, cancels=generate_events, queue=False, **private)

        for trigger in (demo.load, refresh_btn.click, library_tab.select):
            trigger(refresh_library, None, library_outputs, queue=False, **private)
        gallery.select(select_entry, [entry_ids], viewer, queue=False, **private)
        delete_btn.click(delete_selected, [selected_id], viewer, queue=False, **private) \
            .then(refresh_library, None, library_outputs, queue=False, **private)
        reuse_btn.click(reuse_settings, [selected_id], creation_inputs + [tabs], queue=False, **private)

        api_list_btn.click(api_library, [api_limit], api_json, api_name="library", queue=False)
        api_entry_btn.click(api_entry, [api_id], [api_file, api_json], api_name="entry", queue=False)
        api_delete_btn.click(api_delete, [api_id], api_json, api_name="delete", queue=False)

    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    demo.studio = studio  # for launch() and for tests that look inside
    return demo


def _caption(entry: Entry) -> str:
    what = "image" if entry.is_image else f"{entry.duration_s:.0f} s"
    prompt = entry.prompt if len(entry.prompt) <= 48 else entry.prompt[:47] + "…"
    return f"{prompt} · {what}"


# ----------------------------------------------------------------------------
# Loading and launching
# ----------------------------------------------------------------------------

def resolve_model(model: str | Path) -> str:
    """A pipeline folder (checked: weights, known classes) or an `owner/name` Hub repo id."""
    from .hub import REPO_ID, check_pipeline_folder

    if Path(model).is_dir() or not REPO_ID.match(str(model)):
        check_pipeline_folder(Path(model))
    return str(model)


def load_pipeline(model: str | Path, int8: bool = False):
    """A SoraPipeline from a pipeline folder or Hub repo id, on the GPU when there is one; with `int8` on a CPU,
    the DiT's blocks run in int8 (`SoraTransformer3DModel.quantize_int8`: 0.65-0.85x the step time)."""
    import torch

    from .pipeline_sora import SoraPipeline

    pipe = SoraPipeline.from_pretrained(resolve_model(model))
    if torch.cuda.is_available():
        pipe.to("cuda")
        if int8:
            warnings.warn("int8 is for CPU inference; on the GPU the DiT runs in float32", stacklevel=2)
    elif int8:
        pipe.transformer.quantize_int8()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def launch(demo, host: str = "127.0.0.1", port: Optional[int] = None, **kwargs):
    """demo.launch with what the studio needs: the library folder allowed, the theme, no web fonts."""
    import gradio as gr

    theme = gr.themes.Soft(primary_hue="indigo", font=FONTS, font_mono=MONO_FONTS)
    allowed = [str(demo.studio.library.root), str(demo.studio.display_dir)]
    return demo.launch(server_name=host, server_port=port, theme=theme, css=CSS, allowed_paths=allowed,
                       footer_links=["api"], **kwargs)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("app", help="run the studio (Gradio app): generate, browse the library",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="pipelines/sora-tiny", help="pipeline folder")
    p.add_argument("--library", default="outputs/library", help="library folder (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                   help="generation jobs that may wait; more are answered 'Queue is full'")
    p.add_argument("--concurrency", type=int, default=1, help="generation jobs that run at once")
    p.add_argument("--int8", action="store_true", help=INT8_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port={args.port} must be from 0 to 65535")
    resolve_model(args.model)  # fail on bad input before the slow model load
    library = Library(args.library)
    pipe = load_pipeline(args.model, int8=args.int8)
    demo = build_demo(pipe, library, model_name=Path(args.model).name, max_queue=args.max_queue,
                      concurrency=args.concurrency)
    print(f"library: {library.root} ({len(library)} entries)", flush=True)
    launch(demo, host=args.host, port=args.port)
    return 0


__all__ = ["Cancelled", "GenerationRequest", "Studio", "build_demo", "display_factor", "launch", "load_pipeline",
           "make_request"]
