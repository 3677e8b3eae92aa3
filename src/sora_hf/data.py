"""Training data: ShapeWorld streams and folders of captioned videos, one item format.

Every dataset here yields the same item, so the trainer, the VAE and the DiT
never care where a clip came from:

    {
      "video":    float32 tensor (3, F, H, W) in [-1, 1]   (F = 1 + 4k; H, W multiples of 16)
      "short":    str     what a person types
      "long":     str     the detailed, re-captioner style caption
      "segments": [{"short", "long", "start", "end"}, ...]  frame ranges, end exclusive,
                  contiguous from 0 to F; one segment for a plain clip (storyboards have more)
      "style":    str     "none" or a style name (a LoRA preset)
      "fps":      int
      "meta":     dict    where it came from (source, seed / file, ...): enough to find it again
    }

Items differ in size and duration on purpose (NaViT-style packing happens in
the model), so `collate_videos` returns a plain list instead of stacking.

Distributed training note (accelerate): do not `accelerator.prepare()` the
DataLoader of a `ShapeWorldDataset`. For an IterableDataset accelerate
defaults to `dispatch_batches=True` (the main process loads and broadcasts
tensors, which a list of dicts with strings cannot be), and with
`dispatch_batches=False` it wraps the dataset in `IterableDatasetShard`, which
makes every process render world_size times the items and discard most. Build
the DataLoader on each process with `rank=accelerator.process_index,
world_size=accelerator.num_processes` instead: every (rank, worker) pair then
draws its own stream and nothing is wasted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .shapeworld import (ASPECT_RATIOS, DURATIONS, EVAL_SEED_START, FPS, SPLITS, STYLES, check_choice,
                         check_frame_size, check_num_frames, render_clip)
from .shapeworld.world import MAX_SEED
from .video_io import READ_SUFFIXES, read_video_with_info

# ----------------------------------------------------------------------------
# Item helpers
# ----------------------------------------------------------------------------


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (3, F, H, W) float32 in [-1, 1], the model's layout."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, F, H, W)
    return video.float().div_(127.5).sub_(1.0)


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) float in [-1, 1] -> (F, H, W, 3) uint8, e.g. for `write_video`."""
    frames = (video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5  # (3, F, H, W)
    return frames.round().to(torch.uint8).permute(1, 2, 3, 0).numpy()  # (F, H, W, 3)


def largest_valid_num_frames(available: int) -> int:
    """The largest 1 + 4k <= available (the causal VAE takes 1 + 4k frames)."""
    if available < 1:
        raise ValueError(f"available={available!r}: need at least 1 frame")
    return 1 + 4 * ((available - 1) // 4)


def make_item(frames: np.ndarray, short: str, long: str, segments: list[dict], style: str, fps: int,
              meta: dict) -> dict:
    """Assemble the one item format (see the module docstring)."""
    return {"video": frames_to_video(frames), "short": short, "long": long, "segments": segments,
            "style": style, "fps": int(fps), "meta": meta}


def collate_videos(items: Sequence[dict]) -> list[dict]:
    """A batch is a list of items: shapes differ, and the model packs them (NaViT)."""
    items = list(items)
    if not items or not all(isinstance(item, dict) and "video" in item for item in items):
        raise ValueError("items must be a non-empty sequence of dataset items (dicts with a 'video' tensor)")
    return items


def group_by_shape(items: Sequence[dict]) -> dict[tuple[int, int, int], list[int]]:
    """{(F, H, W): [indices into items]}: for code that needs dense stacks (e.g. the VAE
    encoder on a batch), stack each group with `torch.stack([items[i]["video"] ...])`."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(tuple(item["video"].shape[1:]), []).append(i)
    return groups


# ----------------------------------------------------------------------------
# ShapeWorld: an infinite, seeded stream
# ----------------------------------------------------------------------------


@dataclass
class ShapeWorldSampling:
    """What the ShapeWorld training stream mixes, and how often.

    The defaults follow the plan in shared/ARCHITECTURE.md: train on every
    aspect ratio and duration (images included) from the start so no size is
    baked in; keep a quarter of the long-enough clips storyboards so the
    segment-gated cross-attention learns from day one; keep styles rare in the
    base mix (they are mostly for LoRA presets).
    """

    # frame sizes: ASPECT_RATIOS at `tier` (1: 64 px short side, 2: 128 px), or an explicit (height, width) list
    tier: int = 1
    sizes: Optional[Sequence[tuple[int, int]]] = None
    size_weights: Optional[Sequence[float]] = None  # None: uniform over sizes
    # durations in frames (1 + 4k; 1 is an image) and their weights
    durations: Sequence[int] = tuple(DURATIONS.values())  # (1, 17, 33, 65)
    duration_weights: Sequence[float] = (0.15, 0.35, 0.3, 0.2)
    # styles and their weights (trigger phrases are added to the captions by ShapeWorld)
    styles: Sequence[str] = STYLES  # ("none", "stop-motion", "neon", "pixel", "sketch")
    style_weights: Sequence[float] = (0.8, 0.05, 0.05, 0.05, 0.05)
    # two-segment storyboards, as a fraction of the clips that can hold one (>= 9 frames)
    storyboard_fraction: float = 0.25
    # an occluding pole, as a fraction of the clips (never on images)
    occluder_fraction: float = 0.25
    # objects per scene (1 or 2) and their weights
    num_objects: Sequence[int] = (1, 2)
    num_object_weights: Sequence[float] = (0.6, 0.4)

    def __post_init__(self):
        if self.tier not in (1, 2):
            raise ValueError(f"tier={self.tier!r}; allowed: 1 (64x64, 64x112, 112x64) or 2 (both sides doubled)")
        for h, w in self.frame_sizes():
            check_frame_size(h, w)
        for n in self.durations:
            check_num_frames(n)
        for style in self.styles:
            check_choice("styles", style, STYLES)
        for n in self.num_objects:
            check_choice("num_objects", n, (1, 2))
        for name in ("storyboard_fraction", "occluder_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name}={value!r} must be a fraction in [0, 1]")
        _probabilities("size_weights", self.size_weights, len(self.frame_sizes()))
        _probabilities("duration_weights", self.duration_weights, len(self.durations))
        _probabilities("style_weights", self.style_weights, len(self.styles))
        _probabilities("num_object_weights", self.num_object_weights, len(self.num_objects))

    def frame_sizes(self) -> list[tuple[int, int]]:
        """[(height, width), ...] the stream draws from."""
        if self.sizes is not None:
            sizes = [tuple(s) for s in self.sizes]
            if not sizes or any(len(s) != 2 for s in sizes):
                raise ValueError(f"sizes={self.sizes!r} must be a non-empty list of (height, width) pairs")
            return sizes
        return [(h * self.tier, w * self.tier) for h, w in ASPECT_RATIOS.values()]


def _probabilities(name: str, weights: Optional[Sequence[float]], n: int) -> np.ndarray:
    """Weights -> probabilities; None is uniform."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name}={list(weights)!r} must be {n} non-negative weights (one per choice) "
                         f"with a positive sum")
    return w / w.sum()


@dataclass(frozen=True)
class ClipSpec:
    """One drawn ShapeWorld clip: `render_clip(spec.seed, spec.split, **spec.scene_kwargs())` renders it."""

    seed: int
    split: str
    height: int
    width: int
    num_frames: int
    style: str
    num_objects: int
    storyboard: bool
    occluder: bool

    def scene_kwargs(self) -> dict[str, Any]:
        kwargs = asdict(self)
        del kwargs["seed"], kwargs["split"]
        return kwargs


def stream_rng(seed: int, rank: int = 0, worker_id: int = 0, epoch: int = 0) -> np.random.Generator:
    """The generator of one (seed, epoch, rank, worker) stream.

    SeedSequence mixes the four numbers so neighbouring workers or ranks get
    independent streams (seed + worker_id would make rank 0/worker 1 equal rank
    1/worker 0).
    """
    for name, value in (("seed", seed), ("rank", rank), ("worker_id", worker_id), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}={value!r} must be a non-negative integer")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(rank), int(worker_id)]))


def sample_spec(rng: np.random.Generator, sampling: ShapeWorldSampling, split: str = "train") -> ClipSpec:
    """Draw one clip's recipe. Train scene seeds lie in [0, EVAL_SEED_START), eval ones above."""
    check_choice("split", split, SPLITS)
    lo, hi = (0, EVAL_SEED_START) if split == "train" else (EVAL_SEED_START, MAX_SEED)
    sizes = sampling.frame_sizes()
    height, width = sizes[rng.choice(len(sizes), p=_probabilities("size_weights", sampling.size_weights, len(sizes)))]
    num_frames = int(rng.choice(sampling.durations, p=_probabilities(
        "duration_weights", sampling.duration_weights, len(sampling.durations))))
    style = str(rng.choice(sampling.styles, p=_probabilities("style_weights", sampling.style_weights,
                                                              len(sampling.styles))))
    num_objects = int(rng.choice(sampling.num_objects, p=_probabilities(
        "num_object_weights", sampling.num_object_weights, len(sampling.num_objects))))
    storyboard = bool(num_frames >= 9 and rng.random() < sampling.storyboard_fraction)
    occluder = bool(num_frames > 1 and rng.random() < sampling.occluder_fraction)
    seed = int(rng.integers(lo, hi))
    return ClipSpec(seed, split, int(height), int(width), num_frames, style, num_objects, storyboard, occluder)


def render_item(spec: ClipSpec, **meta: Any) -> dict:
    """Render a spec into the item format; `meta` adds to the item's meta (e.g. the stream)."""
    clip = render_clip(spec.seed, spec.split, **spec.scene_kwargs())
    segments = [{"short": s.short, "long": s.long, "start": s.start, "end": s.end} for s in clip.captions.segments]
    item_meta = {"source": "shapeworld", "seed": spec.seed, "split": spec.split,
                 "scene_kwargs": spec.scene_kwargs(), "held_out": clip.scene.is_held_out(), **meta}
    return make_item(clip.frames, clip.captions.short, clip.captions.long, segments, spec.style, FPS, item_meta)


class ShapeWorldDataset(IterableDataset):
    """An infinite, deterministic stream of ShapeWorld items.

    The stream of a DataLoader worker is fixed by (seed, epoch, rank,
    worker_id): reruns are reproducible, every worker and every process
    renders different clips, and `set_epoch` moves all of them to fresh
    streams (an infinite stream has no epochs of its own: bump it when
    resuming from a checkpoint so the resumed run does not replay the clips
    it has already seen).

    Args:
        sampling: what to mix (sizes, durations, styles, storyboards, ...).
        split: "train" (seeds in [0, EVAL_SEED_START), held-out compositions
            never appear) or "eval" (seeds above, every composition).
        seed: the base seed of the stream.
        rank, world_size: this process in a distributed run; None reads
            torch.distributed when it is initialised, else 0 and 1.
    """

    def __init__(self, sampling: Optional[ShapeWorldSampling] = None, split: str = "train", seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__()
        check_choice("split", split, SPLITS)
        self.sampling = sampling if sampling is not None else ShapeWorldSampling()
        if not isinstance(self.sampling, ShapeWorldSampling):
            raise ValueError(f"sampling={sampling!r} must be a ShapeWorldSampling (or None for the defaults)")
        self.split, self.seed, self.epoch = split, seed, 0
        self.rank, self.world_size = _distributed_position(rank, world_size)
        stream_rng(seed, self.rank)  # validates seed and rank now rather than inside a worker

    def set_epoch(self, epoch: int) -> None:
        """Takes effect at the next `iter()`; DataLoader workers with persistent_workers=True keep
        the epoch they started with."""
        self.epoch = epoch

    def specs(self, worker_id: int = 0) -> Iterator[ClipSpec]:
        """The recipes of one worker's stream (cheap: nothing is rendered)."""
        rng = stream_rng(self.seed, self.rank, worker_id, self.epoch)
        while True:
            yield sample_spec(rng, self.sampling, self.split)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker_id = info.id if info is not None else 0
        for spec in self.specs(worker_id):
            yield render_item(spec, rank=self.rank, worker=worker_id, epoch=self.epoch)


def _distributed_position(rank: Optional[int], world_size: Optional[int]) -> tuple[int, int]:
    if rank is None and world_size is None and torch.distributed.is_available() \
            and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank = 0 if rank is None else rank
    world_size = 1 if world_size is None else world_size
    if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive integer")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be an integer in [0, world_size={world_size})")
    return int(rank), int(world_size)


# ----------------------------------------------------------------------------
# A folder of captioned videos
# ----------------------------------------------------------------------------

CAPTIONS_FILE = "captions.jsonl"
CAPTION_KEYS = ("file", "short", "long", "segments", "style")  # other keys are kept in the item's meta
VIDEO_SUFFIXES = READ_SUFFIXES  # what a folder scan counts as a video (images are 1-frame videos)


@dataclass
class CaptionEntry:
    """One line of captions.jsonl, checked."""

    file: str  # relative to the root, "/"-separated
    short: str
    long: str
    segments: Optional[list[dict]]  # None: one segment, the whole clip
    style: str
    extra: dict  # any other keys on the line
    line: int  # 1-based line number, for error messages


class VideoFolderDataset(Dataset):
    """A folder of videos (and images) plus `captions.jsonl`, in the one item format.

    captions.jsonl holds one JSON object per line:
        {"file": "clip.mp4", "short": "...", "long": "..." (optional: falls back to short),
         "segments": [{"short", "long" (optional), "start", "end"}, ...] (optional; frame
         ranges of the file, end exclusive, contiguous from 0 to its frame count),
         "style": "none" (optional), ...any other keys are kept in item["meta"]}
    Every line must name an existing file, and every video in the folder must
    have a line (an uncaptioned video is almost always a mistake).

    Each item:
    - is resampled to `fps` if given (nearest source frame at each new frame time);
    - keeps `num_frames` frames if given (a window, random if `random_window`),
      else the largest 1 + 4k that the file holds;
    - is resized to cover `size` (height, width) and centre-cropped to it if
      given, else centre-cropped to its own size rounded down to multiples of 16;
    - has its segments remapped to the frames it kept.
    Random windows come from (seed, epoch, index): reproducible, and `set_epoch`
    varies them between epochs.
    """

    def __init__(self, root, size: Optional[tuple[int, int]] = None, num_frames: Optional[int] = None,
                 fps: Optional[float] = None, random_window: bool = True, seed: int = 0,
                 captions_file: str = CAPTIONS_FILE):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root={str(root)!r} is not a directory")
        if size is not None:
            if not isinstance(size, (tuple, list)) or len(size) != 2:
                raise ValueError(f"size={size!r} must be (height, width), multiples of 16, or None to keep")
            check_frame_size(*size)
            size = (int(size[0]), int(size[1]))
        if num_frames is not None:
            check_num_frames(num_frames)
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0
                                or not math.isfinite(fps)):
            raise ValueError(f"fps={fps!r} must be a positive number, or None to keep each file's rate")
        self.size, self.num_frames, self.fps = size, num_frames, fps
        self.random_window, self.seed, self.epoch = random_window, seed, 0
        self.captions_path = self.root / captions_file
        self.entries = read_captions(self.captions_path)
        self._check_files()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def _check_files(self) -> None:
        named = {e.file for e in self.entries}
        for e in self.entries:
            if not (self.root / e.file).is_file():
                raise ValueError(f"{self.captions_path}:{e.line}: file={e.file!r} does not exist in {self.root}")
        videos = {p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                  if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(self.root).parts)}
        missing = sorted(videos - named)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            if len(missing) > 5:
                shown += f" and {len(missing) - 5} more"
            raise ValueError(f"{len(missing)} video file(s) in {self.root} have no line in {self.captions_path.name}: "
                             f"{shown}; add a caption line for each (or move them out of the folder)")

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index={index} is out of range for {len(self)} items")
        entry = self.entries[index % len(self)]
        path = self.root / entry.file
        frames, info = read_video_with_info(path)  # (N, H, W, 3) uint8
        where = f"{self.captions_path.name}:{entry.line} ({entry.file!r})"
        segments = entry.segments or [{"short": entry.short, "long": entry.long, "start": 0, "end": len(frames)}]
        if segments[-1]["end"] != len(frames):
            raise ValueError(f"{where}: segments end at frame {segments[-1]['end']} but the file has "
                             f"{len(frames)} frames; the last segment must end at {len(frames)}")

        indices = self._resample(len(frames), info.fps, where)
        need = self.num_frames if self.num_frames is not None else largest_valid_num_frames(len(indices))
        if need > len(indices):
            raise ValueError(f"{where}: num_frames={need} but the file has only {len(indices)} frames"
                             f"{f' at fps={self.fps}' if self.fps else ''}; allowed: num_frames <= "
                             f"{largest_valid_num_frames(len(indices))} for this file, or None")
        rng = np.random.default_rng([self.seed, self.epoch, index % len(self)])
        start = int(rng.integers(0, len(indices) - need + 1)) if self.random_window else 0
        indices = indices[start:start + need]

        video = self._resize(frames[indices], where)  # (F, H', W', 3) uint8
        out_fps = self.fps if self.fps is not None else (info.fps or FPS)
        meta = {**entry.extra,  # the line's own keys first: ours below describe where the item came from
                "source": "folder", "file": entry.file, "index": index % len(self),
                "frame_indices": indices.tolist(), "source_fps": info.fps, "source_num_frames": len(frames),
                "source_size": (info.height, info.width)}
        return make_item(video, entry.short, entry.long, remap_segments(segments, indices), entry.style,
                         max(1, round(out_fps)), meta)

    def _resample(self, n: int, src_fps: Optional[float], where: str) -> np.ndarray:
        """Source frame index of each output frame: identity, or the nearest frame at the new rate."""
        if self.fps is None or n == 1 or (src_fps is not None and abs(src_fps - self.fps) < 1e-6):
            return np.arange(n)
        if src_fps is None:
            raise ValueError(f"{where}: fps={self.fps} asks for resampling but the file has no frame rate")
        count = int(math.floor((n - 1) * self.fps / src_fps + 1e-9)) + 1  # output frames within the clip
        return np.minimum(np.rint(np.arange(count) * src_fps / self.fps).astype(int), n - 1)

    def _resize(self, frames: np.ndarray, where: str) -> np.ndarray:
        """Cover `size` and centre-crop to it, or centre-crop to multiples of 16."""
        _, h, w, _ = frames.shape
        if self.size is None:
            th, tw = h // 16 * 16, w // 16 * 16
            if th == 0 or tw == 0:
                raise ValueError(f"{where}: frames are {h}x{w} (HxW); at least 16x16 is needed, "
                                 f"or pass size=(height, width) to resize")
            return _centre_crop(frames, th, tw)
        th, tw = self.size
        scale = max(th / h, tw / w)
        rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (rh, rw) != (h, w):
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (F, 3, H, W)
            x = F.interpolate(x, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
            frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (F, rh, rw, 3)
        return _centre_crop(frames, th, tw)


def video_folder_loader(dataset: VideoFolderDataset, batch_size: int, seed: int = 0, rank: int = 0,
                        world_size: int = 1, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """Shuffled batches (lists of items) of a folder, each epoch in a new order (`sampler.set_epoch`). With
    several processes each takes its own share of every epoch: a plain shuffle, seeded alike in every process,
    would hand them all the same clips."""
    from torch.utils.data import DataLoader, DistributedSampler

    if batch_size < 1 or len(dataset) < batch_size * world_size:
        raise ValueError(f"batch_size={batch_size}: {str(dataset.root)!r} holds {len(dataset)} clips; allowed: 1 to "
                         f"{len(dataset) // world_size} per batch for {world_size} process(es)")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_videos, drop_last=True,
                      num_workers=num_workers)


def _centre_crop(frames: np.ndarray, th: int, tw: int) -> np.ndarray:
    _, h, w, _ = frames.shape
    top, left = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(frames[:, top:top + th, left:left + tw])


def remap_segments(segments: list[dict], indices: np.ndarray) -> list[dict]:
    """Segments over source frames -> segments over the kept frames (`indices`, ascending).

    An output frame belongs to the segment that holds its source frame;
    segments with no kept frame disappear. The result is contiguous from 0 to
    len(indices).
    """
    out = []
    for seg in segments:
        start = int(np.searchsorted(indices, seg["start"], side="left"))
        end = int(np.searchsorted(indices, seg["end"], side="left"))
        if end > start:
            out.append({"short": seg["short"], "long": seg["long"], "start": start, "end": end})
    return out


def read_captions(path: Path) -> list[CaptionEntry]:
    """Parse and check captions.jsonl; errors name the file, the line and what is allowed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"captions file {str(path)!r} does not exist; a video folder needs one "
                         f"(one JSON object per line, e.g. "
                         f"{{\"file\": \"clip.mp4\", \"short\": \"...\", \"long\": \"...\"}})")
    entries: list[CaptionEntry] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: invalid JSON ({err.msg} at column {err.colno}); "
                             f"each line must be one JSON object") from err
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for key in ("file", "short"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise ValueError(f"{where}: {key}={obj.get(key)!r}; a non-empty string is required")
        file = obj["file"]
        parts = Path(file).parts
        if Path(file).is_absolute() or ".." in parts:
            raise ValueError(f"{where}: file={file!r} must be a path relative to the folder, without '..'")
        file = Path(file).as_posix()
        if file in seen:
            raise ValueError(f"{where}: file={file!r} is already captioned on line {seen[file]}; one line per file")
        seen[file] = number
        short = obj["short"]
        long = obj.get("long", short)
        if not isinstance(long, str) or not long.strip():
            raise ValueError(f"{where}: long={long!r}; a non-empty string is required (or leave it out)")
        style = obj.get("style", "none")
        if not isinstance(style, str) or not style:
            raise ValueError(f"{where}: style={style!r}; a non-empty string such as {list(STYLES)} is required")
        segments = _check_segments(obj.get("segments"), where)
        extra = {k: v for k, v in obj.items() if k not in CAPTION_KEYS}
        entries.append(CaptionEntry(file, short, long, segments, style, extra, number))
    if not entries:
        raise ValueError(f"captions file {str(path)!r} holds no caption lines")
    return entries


def _check_segments(segments, where: str) -> Optional[list[dict]]:
    if segments is None:
        return None
    if not isinstance(segments, list) or not segments:
        raise ValueError(f"{where}: segments={segments!r} must be a non-empty list of "
                         f"{{\"short\", \"long\", \"start\", \"end\"}} objects (or left out)")
    out, expected_start = [], 0
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not isinstance(seg.get("short"), str) or not seg["short"].strip():
            raise ValueError(f"{where}: segments[{i}]={seg!r} needs a non-empty 'short' string")
        start, end = seg.get("start"), seg.get("end")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or end <= start:
            raise ValueError(f"{where}: segments[{i}] has start={start!r}, end={end!r}; "
                             f"integers with start < end (end exclusive) are required")
        if start != expected_start:
            raise ValueError(f"{where}: segments[{i}] starts at {start}; segments must be contiguous from "
                             f"frame 0, so it must start at {expected_start}")
        long = seg.get("long", seg["short"])
        if not isinstance(long, str) or not long.strip():
            raise ValueError(f"{where}: segments[{i}] has long={long!r}; a non-empty string (or leave it out)")
        out.append({"short": seg["short"], "long": long, "start": start, "end": end})
        expected_start = end
    return out


__all__ = [
    "CAPTIONS_FILE", "CaptionEntry", "ClipSpec", "ShapeWorldDataset", "ShapeWorldSampling", "VideoFolderDataset",
    "collate_videos", "frames_to_video", "group_by_shape", "largest_valid_num_frames", "make_item",
    "read_captions", "remap_segments", "render_item", "sample_spec", "stream_rng", "video_to_frames",
]
