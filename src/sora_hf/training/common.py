"""What every training command shares: run folders, logs, loss plots, checkpoints
with resume, and provenance files written next to shipped weights."""

from __future__ import annotations

import json
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CHECKPOINT_PREFIX = "checkpoint-"


@dataclass
class FolderOptions:
    """What each file of a `--video-folder` becomes before training sees it: real video comes at any size and
    length. The base of both training configs, so both commands take these flags."""

    # resize to cover (height, width), multiples of 16, and centre-crop to it; (0, 0): each file's own size,
    # cropped to multiples of 16
    folder_size: tuple = (0, 0)
    folder_num_frames: int = 0  # a random window of this many frames (1 + 4k); 0: the most (1 + 4k) a file holds
    folder_fps: float = 0.0  # resample each file to this frame rate first; 0: keep its own


def folder_loader(video_folder: str, options: FolderOptions, seed: int, batch_size: int, accelerator,
                  num_workers: int):
    """A training command's `--video-folder` as this process's `video_folder_loader`, the `--folder-*` flags
    checked first (errors name the flag, not the dataset's argument)."""
    from ..data import VideoFolderDataset, video_folder_loader
    from ..shapeworld.world import check_frame_size, check_num_frames

    size, num_frames, fps = tuple(options.folder_size), options.folder_num_frames, options.folder_fps
    try:
        if len(size) != 2:
            raise ValueError("give two values, height,width")
        if any(size):
            check_frame_size(*size)
    except ValueError as error:
        raise ValueError(f"--folder-size {','.join(map(str, size))}: {error}; 0,0 keeps each file's size") from None
    try:
        if num_frames:
            check_num_frames(num_frames)
    except ValueError as error:
        raise ValueError(f"--folder-num-frames {num_frames}: {error}; 0 keeps each file's length") from None
    if fps < 0:
        raise ValueError(f"--folder-fps {fps} must be > 0; 0 keeps each file's rate")
    dataset = VideoFolderDataset(video_folder, size=size if any(size) else None, num_frames=num_frames or None,
                                 fps=fps or None, seed=seed)
    return video_folder_loader(dataset, batch_size, seed, accelerator.process_index, accelerator.num_processes,
                               num_workers)


def forever(loader):
    """A DataLoader's batches, epoch after epoch; a folder's (map-style) dataset gets new random windows and a new
    order each epoch. (ShapeWorld's stream is endless, and draws its own epochs.)"""
    from torch.utils.data import IterableDataset

    epoch = 0
    while True:
        if not isinstance(loader.dataset, IterableDataset):
            loader.dataset.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


class RunLog:
    """Append-only JSONL log of a training run plus its loss-curve plot.

    One JSON object per logged step, so a resumed run continues the same file
    and the plot always shows the whole run. In a multi-process run only the
    main process writes and plots it (`writer=False` elsewhere), with metrics
    already averaged over the processes (`mean_over_processes`)."""

    def __init__(self, out_dir: Path, name: str = "log.jsonl", writer: bool = True):
        self.path = Path(out_dir) / name
        self.writer = writer
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, **metrics) -> None:
        if not self.writer:
            return
        record = {"step": int(step), "time": round(time.time(), 3), **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self, after_step: Optional[int] = None) -> list[dict]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if after_step is None or r["step"] <= after_step]

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint we resume from (they will be redone)."""
        if not self.writer:
            return
        kept = self.records(after_step=step)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def plot(self, png: Path, keys: tuple[str, ...] = ("loss",), title: str = "") -> None:
        if not self.writer:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.records()
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, alpha=0.3, label=f"{key}")
            ax.plot(steps, _ema(values), label=f"{key} (smoothed)")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:  # a run shorter than log_every has logged no loss yet
            ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)


def latest_checkpoint(out_dir: Path) -> Optional[Path]:
    """The newest `checkpoint-<step>` folder of a run, or None."""
    found = [(int(m.group(1)), p) for p in Path(out_dir).glob(CHECKPOINT_PREFIX + "*")
             if (m := re.fullmatch(CHECKPOINT_PREFIX + r"(\d+)", p.name)) and (p / "state.json").exists()]
    return max(found)[1] if found else None


def save_checkpoint(accelerator, out_dir: Path, step: int, keep: int = 2, **state) -> Path:
    """accelerate's full state (model, optimiser, RNGs, registered objects) plus our counters.

    state.json is written last, so a folder without it is an interrupted save and is ignored."""
    path = Path(out_dir) / f"{CHECKPOINT_PREFIX}{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "state.json").write_text(json.dumps({"step": step, **state}))
        for old in sorted(Path(out_dir).glob(CHECKPOINT_PREFIX + "*"), key=_checkpoint_step)[:-keep]:
            _remove_tree(old)
    return path


def load_checkpoint(accelerator, path: Path) -> dict:
    accelerator.load_state(str(path))
    return json.loads((Path(path) / "state.json").read_text())


def synced_wall_time(accelerator, wall_time_s: float) -> float:
    """The run's wall time as every process agrees on it: the slowest process's. A time budget sets the lr
    schedule and the last step, so processes that each read their own clock would train at different lrs
    (their weights drift apart) and one could stop while another waits forever for its gradients."""
    if accelerator.num_processes == 1:
        return wall_time_s
    import torch

    return accelerator.reduce(torch.tensor([wall_time_s], device=accelerator.device), reduction="max").item()


def mean_over_processes(accelerator, **values) -> dict[str, float]:
    """Scalars (floats or 0-d tensors) averaged over the processes, for the log and the progress bar: each
    process's loss is that of its own share of the batch. Every process must call it at the same steps."""
    if accelerator.num_processes == 1:  # every step: no tensors to build for one process
        return {k: v.item() if hasattr(v, "item") else float(v) for k, v in values.items()}
    import torch

    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=accelerator.device).detach().reshape(())
                           for v in values.values()])
    return dict(zip(values, accelerator.reduce(stacked, reduction="mean").tolist()))


def print_result(result: dict) -> None:
    """A run's summary as one JSON line on stdout, once: from the main process of a multi-process run."""
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps(result))


def provenance(command: Optional[list[str]] = None, **fields) -> dict:
    """Who made these weights and how: the command, code version, software, machine and results."""
    import torch

    return {
        "command": " ".join(shlex.quote(a) for a in (command or ["sora-hf", *sys.argv[1:]])),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {_cpu_count()} CPU cores"
                   + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        **{k: _plain(v) for k, v in fields.items()},
    }


def record_command(out_dir: Path, step: int) -> list[dict]:
    """Append this invocation (its command line, the code it runs and the step it starts from) to the run's
    commands.jsonl and return the whole history, so the provenance of a resumed run names every command that
    made it. The commit is read here, at the start: the provenance's own `git_commit` is read at export, and
    a long run can outlive the commit it started from."""
    path = Path(out_dir) / "commands.jsonl"
    now = provenance()
    entry = {"command": now["command"], "git_commit": now["git_commit"], "from_step": step,
             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steps_within_budget(steps: int, step: int, wall_time_s: float, time_budget_h: float) -> int:
    """The step a run will end at: `steps`, or fewer where its wall-clock budget ends it first (at the pace
    of the steps so far). A progress bar's total, so that its ETA is the run's real end."""
    if time_budget_h <= 0 or step <= 0 or wall_time_s <= 0:
        return steps
    return max(step, min(steps, round(step * 3600 * time_budget_h / wall_time_s)))


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# ----------------------------------------------------------------------------

def _checkpoint_step(path: Path) -> int:
    m = re.fullmatch(CHECKPOINT_PREFIX + r"(\d+)", path.name)
    return int(m.group(1)) if m else -1


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _ema(values, alpha: float = 0.05) -> list[float]:
    out, avg = [], None
    for v in values:
        avg = v if avg is None else (1 - alpha) * avg + alpha * v
        out.append(avg)
    return out


def _plain(value):
    """Tensors and numpy scalars -> JSON-friendly Python numbers."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
