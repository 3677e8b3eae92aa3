"""data: the ShapeWorld stream, the video-folder dataset, one item format."""

from __future__ import annotations

import collections
import itertools
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sora_hf.data import (ShapeWorldDataset, ShapeWorldSampling, VideoFolderDataset, collate_videos,
                          frames_to_video, group_by_shape, largest_valid_num_frames, render_item, stream_rng,
                          video_folder_loader, video_to_frames)
from sora_hf.shapeworld import EVAL_SEED_START, HELD_OUT, STYLES, render_clip, sample_scene
from sora_hf.video_io import write_video

# short clips keep the rendering tests fast; the default mix is tested on recipes (specs)
FAST = ShapeWorldSampling(durations=(1, 9, 17), duration_weights=(1, 1, 1))


def check_item(item: dict) -> None:
    """The one item format."""
    assert set(item) == {"video", "short", "long", "segments", "style", "fps", "meta"}
    video = item["video"]
    assert isinstance(video, torch.Tensor) and video.dtype == torch.float32 and video.ndim == 4
    c, f, h, w = video.shape
    assert c == 3 and (f - 1) % 4 == 0 and h % 16 == 0 and w % 16 == 0
    assert -1.0 <= video.min() and video.max() <= 1.0
    assert isinstance(item["short"], str) and item["short"] and isinstance(item["long"], str) and item["long"]
    assert isinstance(item["style"], str) and isinstance(item["fps"], int) and item["fps"] > 0
    assert isinstance(item["meta"], dict) and "source" in item["meta"]
    segments = item["segments"]
    assert segments and segments[0]["start"] == 0 and segments[-1]["end"] == f
    for a, b in zip(segments, segments[1:]):
        assert a["end"] == b["start"]
    for s in segments:
        assert set(s) == {"short", "long", "start", "end"} and s["start"] < s["end"] and s["short"] and s["long"]


# ----------------------------------------------------------------------------
# ShapeWorld stream
# ----------------------------------------------------------------------------

def test_shapeworld_item_format_and_meta_reproduces_the_clip():
    items = list(itertools.islice(iter(ShapeWorldDataset(FAST, seed=1)), 6))
    for item in items:
        check_item(item)
        meta = item["meta"]
        assert meta["source"] == "shapeworld" and meta["split"] == "train" and 0 <= meta["seed"] < EVAL_SEED_START
        assert item["fps"] == 8 and item["style"] == meta["scene_kwargs"]["style"]
        clip = render_clip(meta["seed"], meta["split"], **meta["scene_kwargs"])
        assert torch.equal(frames_to_video(clip.frames), item["video"])
        assert item["short"] == clip.captions.short and item["long"] == clip.captions.long


def test_shapeworld_is_deterministic_per_seed():
    def first(seed, n=4, **kw):
        return list(itertools.islice(iter(ShapeWorldDataset(FAST, seed=seed, **kw)), n))

    a, b, c = first(7), first(7), first(8)
    assert all(torch.equal(x["video"], y["video"]) and x["long"] == y["long"] for x, y in zip(a, b))
    assert [x["meta"]["seed"] for x in a] != [x["meta"]["seed"] for x in c]
    dataset = ShapeWorldDataset(seed=7)
    before = list(itertools.islice(dataset.specs(), 20))
    dataset.set_epoch(1)
    assert list(itertools.islice(dataset.specs(), 20)) != before  # a new epoch is a new stream


def test_worker_and_rank_streams_are_distinct():
    def seeds(**kw):
        rng = stream_rng(0, **kw)
        return rng.integers(0, 2**31, 8).tolist()

    streams = [seeds(rank=r, worker_id=w) for r in range(3) for w in range(3)]
    assert len({tuple(s) for s in streams}) == 9
    # no collision between "rank 0 / worker 1" and "rank 1 / worker 0" (a seed + offset scheme would collide)
    assert seeds(rank=0, worker_id=1) != seeds(rank=1, worker_id=0)
    a = ShapeWorldDataset(seed=0, rank=0, world_size=2)
    b = ShapeWorldDataset(seed=0, rank=1, world_size=2)
    assert list(itertools.islice(a.specs(), 10)) != list(itertools.islice(b.specs(), 10))


def test_dataloader_workers_draw_their_own_streams():
    dataset = ShapeWorldDataset(ShapeWorldSampling(durations=(1, 5), duration_weights=(1, 1)), seed=3)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_videos)
    batches = list(itertools.islice(iter(loader), 4))  # round robin: workers 0, 1, 0, 1
    assert all(isinstance(batch, list) and len(batch) == 2 for batch in batches)
    by_worker = collections.defaultdict(list)
    for batch in batches:
        for item in batch:
            check_item(item)
            by_worker[item["meta"]["worker"]].append(item["meta"]["seed"])
    assert set(by_worker) == {0, 1}
    for worker, got in by_worker.items():  # each worker's stream is the one `specs(worker)` describes
        assert got == [s.seed for s in itertools.islice(dataset.specs(worker), len(got))]
    assert not set(by_worker[0]) & set(by_worker[1])


def test_default_mixture_covers_sizes_durations_styles_images_storyboards():
    specs = list(itertools.islice(ShapeWorldDataset(seed=0).specs(), 200))
    sizes = collections.Counter((s.height, s.width) for s in specs)
    durations = collections.Counter(s.num_frames for s in specs)
    styles = collections.Counter(s.style for s in specs)
    assert set(sizes) == {(64, 64), (64, 112), (112, 64)}
    assert set(durations) == {1, 17, 33, 65} and durations[1] >= 10  # images are in the mix
    assert set(styles) == set(STYLES) and styles["none"] > 120  # mostly unstyled
    long_enough = [s for s in specs if s.num_frames >= 9]
    storyboards = sum(s.storyboard for s in long_enough)
    assert 0.12 < storyboards / len(long_enough) < 0.4  # default fraction 0.25
    assert not any(s.storyboard or s.occluder for s in specs if s.num_frames == 1)
    assert {s.num_objects for s in specs} == {1, 2} and any(s.occluder for s in specs)
    # rendered items follow their recipes
    dataset = ShapeWorldDataset(FAST, seed=0)
    for spec, item in itertools.islice(zip(dataset.specs(), dataset), 20):
        check_item(item)
        assert tuple(item["video"].shape[1:]) == (spec.num_frames, spec.height, spec.width)
        assert len(item["segments"]) == (2 if spec.storyboard else 1)
        if spec.storyboard:  # split on a latent-frame boundary (1 + 4k)
            assert (item["segments"][1]["start"] - 1) % 4 == 0


def test_sampling_options_are_honoured():
    def specs(sampling, n=100):
        return list(itertools.islice(ShapeWorldDataset(sampling, seed=2).specs(), n))

    tier2 = specs(ShapeWorldSampling(tier=2))
    assert {(s.height, s.width) for s in tier2} == {(128, 128), (128, 224), (224, 128)}
    custom = specs(ShapeWorldSampling(sizes=[(32, 48), (48, 32)], size_weights=[1, 0]))
    assert {(s.height, s.width) for s in custom} == {(32, 48)}
    only = specs(ShapeWorldSampling(durations=(33,), duration_weights=(1,), styles=("neon",), style_weights=(1,),
                                    storyboard_fraction=1.0, occluder_fraction=0.0, num_objects=(2,),
                                    num_object_weights=(1,)))
    assert all(s.num_frames == 33 and s.style == "neon" and s.storyboard and not s.occluder and s.num_objects == 2
               for s in only)


def test_train_split_never_yields_held_out_compositions():
    def scenes(split, n=300):
        for spec in itertools.islice(ShapeWorldDataset(split=split, seed=5).specs(), n):
            yield spec, sample_scene(spec.seed, spec.split, **spec.scene_kwargs())

    for spec, scene in scenes("train"):
        assert spec.seed < EVAL_SEED_START and not scene.compositions() & HELD_OUT, (spec, scene.compositions())
    eval_specs = list(scenes("eval"))
    assert all(spec.seed >= EVAL_SEED_START for spec, _ in eval_specs)
    assert sum(scene.is_held_out() for _, scene in eval_specs) > 10  # the check above could fail


@pytest.mark.parametrize("kwargs, message", [
    ({"tier": 3}, "tier=3"),
    ({"sizes": [(60, 64)]}, "height=60"),
    ({"durations": (16,), "duration_weights": (1,)}, "num_frames=16"),
    ({"styles": ("watercolour",), "style_weights": (1,)}, "styles='watercolour'"),
    ({"duration_weights": (1, 1)}, "duration_weights=.*4 non-negative"),
    ({"style_weights": (1, -1, 0, 0, 0)}, "style_weights"),
    ({"storyboard_fraction": 1.5}, "storyboard_fraction=1.5"),
    ({"num_objects": (3,), "num_object_weights": (1,)}, "num_objects=3"),
])
def test_bad_sampling_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapeWorldSampling(**kwargs)


def test_bad_dataset_arguments_raise():
    with pytest.raises(ValueError, match="split='test'"):
        ShapeWorldDataset(split="test")
    with pytest.raises(ValueError, match=r"rank=2 .*\[0, world_size=2\)"):
        ShapeWorldDataset(rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed=-1"):
        ShapeWorldDataset(seed=-1)


def test_collate_and_group_by_shape():
    dataset = ShapeWorldDataset(ShapeWorldSampling(durations=(1, 5), duration_weights=(1, 1)), seed=0)
    items = list(itertools.islice(iter(dataset), 8))
    batch = collate_videos(items)
    assert isinstance(batch, list) and len(batch) == 8
    groups = group_by_shape(batch)
    assert sorted(i for g in groups.values() for i in g) == list(range(8))
    for shape, indices in groups.items():
        assert torch.stack([batch[i]["video"] for i in indices]).shape[2:] == shape
    with pytest.raises(ValueError, match="non-empty"):
        collate_videos([])


def test_frames_video_round_trip_and_frame_counts():
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 32, 3), dtype=np.uint8)
    video = frames_to_video(frames)
    assert video.shape == (3, 5, 16, 32) and video.min() >= -1 and video.max() <= 1
    assert np.array_equal(video_to_frames(video), frames)
    assert [largest_valid_num_frames(n) for n in (1, 4, 5, 16, 17, 20)] == [1, 1, 5, 13, 17, 17]


# ----------------------------------------------------------------------------
# Video folder
# ----------------------------------------------------------------------------

def write_captions(root, lines) -> None:
    (root / "captions.jsonl").write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """a.mp4: plain 17-frame 64x112 clip; b.mp4: 33-frame storyboard; c.png: an image."""
    root = tmp_path_factory.mktemp("videos")
    plain = render_clip(11, height=64, width=112, num_frames=17, storyboard=False)
    board = render_clip(12, num_frames=33, storyboard=True)
    image = render_clip(13, num_frames=1)
    write_video(root / "a.mp4", plain.frames)
    (root / "sub").mkdir()
    write_video(root / "sub" / "b.mp4", board.frames)
    write_video(root / "c.png", image.frames)
    segments = [{"short": s.short, "long": s.long, "start": s.start, "end": s.end} for s in board.captions.segments]
    write_captions(root, [
        {"file": "a.mp4", "short": plain.captions.short, "long": plain.captions.long, "seed": 11},
        "",  # blank lines are fine
        {"file": "sub/b.mp4", "short": board.captions.short, "segments": segments},
        {"file": "c.png", "short": image.captions.short, "style": "none"},
    ])
    return root, plain, board, image


def test_folder_items_keep_size_and_frames(folder):
    root, plain, board, image = folder
    dataset = VideoFolderDataset(root)
    assert len(dataset) == 3
    a, b, c = dataset[0], dataset[1], dataset[2]
    for item in (a, b, c):
        check_item(item)
        assert item["meta"]["source"] == "folder"
    assert a["video"].shape == (3, 17, 64, 112) and a["fps"] == 8 and a["meta"]["seed"] == 11
    assert a["long"] == plain.captions.long and len(a["segments"]) == 1
    assert (video_to_frames(a["video"]).astype(int) - plain.frames).std() < 6  # H.264 is lossy, not wrong
    assert b["video"].shape == (3, 33, 64, 64) and b["long"] == b["short"]  # long falls back to short
    assert [(s["start"], s["end"]) for s in b["segments"]] == [(s.start, s.end) for s in board.captions.segments]
    assert c["video"].shape == (3, 1, 64, 64) and c["fps"] == 8
    assert torch.equal(c["video"], frames_to_video(image.frames))  # PNG is lossless
    assert collate_videos([a, b, c]) == [a, b, c]


def test_folder_resize_window_and_fps(folder):
    root, _, board, _ = folder
    resized = VideoFolderDataset(root, size=(32, 48))
    assert [tuple(resized[i]["video"].shape[1:]) for i in range(3)] == [(17, 32, 48), (33, 32, 48), (1, 32, 48)]

    windowed = VideoFolderDataset(root, num_frames=9)
    starts = set()
    for epoch in range(6):
        windowed.set_epoch(epoch)
        item = windowed[1]
        check_item(item)
        assert item["video"].shape[1] == 9
        starts.add(item["meta"]["frame_indices"][0])
        # the kept frames are consecutive and the segments follow them
        indices = item["meta"]["frame_indices"]
        assert indices == list(range(indices[0], indices[0] + 9))
    assert len(starts) > 1  # the window moves between epochs
    windowed.set_epoch(0)
    assert windowed[1]["meta"]["frame_indices"] == windowed[1]["meta"]["frame_indices"]  # and is reproducible

    fixed = VideoFolderDataset(root, num_frames=5, random_window=False)
    assert fixed[1]["meta"]["frame_indices"] == [0, 1, 2, 3, 4] and len(fixed[1]["segments"]) == 1

    slow = VideoFolderDataset(root, fps=4)
    item = slow[1]  # 33 frames at 8 fps -> 17 at 4 fps
    assert item["fps"] == 4 and item["meta"]["frame_indices"] == list(range(0, 33, 2))
    boundary = board.captions.segments[1].start
    assert [s["start"] for s in item["segments"]] == [0, (boundary + 1) // 2]
    assert slow[2]["video"].shape[1] == 1  # an image needs no resampling


def test_folder_crops_odd_sizes_to_multiples_of_16(tmp_path):
    write_video(tmp_path / "odd.mp4", np.full((5, 40, 50, 3), 128, np.uint8))
    write_captions(tmp_path, [{"file": "odd.mp4", "short": "gray"}])
    assert VideoFolderDataset(tmp_path)[0]["video"].shape == (3, 5, 32, 48)
    write_video(tmp_path / "odd.mp4", np.full((5, 8, 50, 3), 128, np.uint8))
    with pytest.raises(ValueError, match="odd.mp4.*8x50.*at least 16x16"):
        VideoFolderDataset(tmp_path)[0]


def test_folder_too_few_frames_raises(folder):
    root = folder[0]
    with pytest.raises(ValueError, match=r"a\.mp4.*num_frames=33.*only 17 frames"):
        VideoFolderDataset(root, num_frames=33)[0]


@pytest.mark.parametrize("lines, message", [
    ([{"file": "nope.mp4", "short": "x"}], r"captions.jsonl:1: file='nope.mp4' does not exist"),
    (['{"file": "v.mp4", "short": "x"', ], r"captions.jsonl:1: invalid JSON"),
    ([{"file": "v.mp4", "short": "x"}, "[1, 2]"], r"captions.jsonl:2: expected a JSON object"),
    ([{"file": "v.mp4"}], r"captions.jsonl:1: short=None"),
    ([{"file": "v.mp4", "short": "x"}, {"file": "v.mp4", "short": "y"}], "already captioned on line 1"),
    ([{"file": "../v.mp4", "short": "x"}], r"file='\.\./v\.mp4' must be a path relative"),
    ([{"file": "v.mp4", "short": "x", "long": 3}], "long=3"),
    ([{"file": "v.mp4", "short": "x", "segments": [{"short": "a", "start": 1, "end": 5}]}], "must start at 0"),
    ([{"file": "v.mp4", "short": "x", "segments": [{"short": "a", "start": 0, "end": 2},
                                                    {"short": "b", "start": 3, "end": 5}]}], "must start at 2"),
    ([{"file": "v.mp4", "short": "x", "segments": [{"short": "a", "start": 0, "end": "5"}]}], "end='5'"),
    ([{"file": "v.mp4", "short": "x", "segments": []}], "segments=\\[\\]"),
    ([], "holds no caption lines"),
])
def test_bad_captions_raise(tmp_path, lines, message):
    write_video(tmp_path / "v.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    write_captions(tmp_path, lines)
    with pytest.raises(ValueError, match=message):
        VideoFolderDataset(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="captions.jsonl.*does not exist"):
        VideoFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        VideoFolderDataset(tmp_path / "nowhere")
    write_video(tmp_path / "v.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    write_video(tmp_path / "extra.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    write_captions(tmp_path, [{"file": "v.mp4", "short": "x"}])
    with pytest.raises(ValueError, match="1 video file.*no line in captions.jsonl: 'extra.mp4'"):
        VideoFolderDataset(tmp_path)
    (tmp_path / "extra.mp4").unlink()
    for kwargs, message in [({"size": (30, 32)}, "height=30"), ({"num_frames": 16}, "num_frames=16"),
                            ({"fps": 0}, "fps=0"), ({"size": 64}, "size=64")]:
        with pytest.raises(ValueError, match=message):
            VideoFolderDataset(tmp_path, **kwargs)
    # segments must end where the file ends (checked when the file is read)
    write_captions(tmp_path, [{"file": "v.mp4", "short": "x", "segments": [{"short": "a", "start": 0, "end": 9}]}])
    with pytest.raises(ValueError, match=r"v.mp4.*end at frame 9 but the file has 5 frames"):
        VideoFolderDataset(tmp_path)[0]
    # empty and unreadable videos are named
    (tmp_path / "v.mp4").write_bytes(b"")
    write_captions(tmp_path, [{"file": "v.mp4", "short": "x"}])
    with pytest.raises(ValueError, match=r"v\.mp4.*empty"):
        VideoFolderDataset(tmp_path)[0]
    (tmp_path / "v.mp4").write_bytes(b"\x00\x01 definitely not a video" * 50)
    with pytest.raises(ValueError, match=r"v\.mp4.*could not be read"):
        VideoFolderDataset(tmp_path)[0]
    with pytest.raises(IndexError):
        VideoFolderDataset(tmp_path)[5]


def test_render_item_matches_dataset_item():
    dataset = ShapeWorldDataset(FAST, seed=9)
    spec = next(dataset.specs())
    item = next(iter(dataset))
    again = render_item(spec)
    assert torch.equal(item["video"], again["video"]) and item["segments"] == again["segments"]


def test_folder_loader_gives_each_process_its_own_share(tmp_path):
    for i in range(4):
        write_video(tmp_path / f"{i}.png", render_clip(20 + i, num_frames=1).frames)
    write_captions(tmp_path, [{"file": f"{i}.png", "short": f"clip {i}"} for i in range(4)])
    dataset = VideoFolderDataset(tmp_path)
    loaders = [video_folder_loader(dataset, batch_size=1, seed=0, rank=rank, world_size=2) for rank in (0, 1)]
    orders = []
    for epoch in range(3):
        shares = []
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
            shares.append([batch[0]["meta"]["file"] for batch in loader])
        assert len(shares[0]) == len(shares[1]) == 2 and sorted(shares[0] + shares[1]) == [f"{i}.png" for i in range(4)]
        orders.append(shares[0] + shares[1])
    assert len({tuple(o) for o in orders}) > 1  # each epoch shuffles anew
    with pytest.raises(ValueError, match=r"batch_size=3: .* holds 4 clips; allowed: 1 to 2 per batch for 2 process"):
        video_folder_loader(dataset, batch_size=3, world_size=2)
