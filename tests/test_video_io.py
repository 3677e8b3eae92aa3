"""video_io: browser-ready mp4 (H.264, yuv420p, faststart), GIF, PNG, and reading them back."""

from __future__ import annotations

import os
import struct

import av
import numpy as np
import pytest
import torch

from sora_hf import video_io
from sora_hf.shapeworld import render_clip
from sora_hf.video_io import read_video, read_video_with_info, write_video


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])  # BT.709 Y'


def top_level_atoms(path) -> list[str]:
    """Box types at the top level of an mp4 file, in file order."""
    data = path.read_bytes()
    atoms, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:  # 64-bit size follows
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        atoms.append(kind.decode("latin-1"))
        if size == 0:  # box runs to the end of the file
            break
        pos += size
    return atoms


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [render_clip(seed, num_frames=17).frames for seed in range(4)]  # (17, 64, 64, 3) each


# ----------------------------------------------------------------------------
# mp4 round trip
# ----------------------------------------------------------------------------

def test_mp4_round_trip_psnr(tmp_path, clips):
    """H.264 at the default CRF is near-transparent on luma; the RGB error is bounded by
    yuv420p's half-resolution chroma at the sharp colour edges of 64 px ShapeWorld.

    Measured (8 seeds, 64x64x17, crf 15): RGB PSNR min 32.4 / mean 35.7 dB, luma
    min 47.3 / mean 51.2 dB; with upscale=4, RGB min 38.5 / mean 41.6 dB. The
    pure colour conversion RGB -> yuv420p -> RGB (no codec) already gives only
    ~34.5-41.5 dB on the same clips, so the bounds below test the codec path,
    not the subsampling.
    """
    rgb, y = [], []
    for i, frames in enumerate(clips):
        path = write_video(tmp_path / f"clip{i}.mp4", frames)
        decoded = read_video(path)
        assert decoded.shape == frames.shape and decoded.dtype == np.uint8
        rgb.append(psnr(decoded, frames))
        y.append(psnr(luma(decoded), luma(frames)))
    assert min(rgb) > 31.0 and np.mean(rgb) > 34.0, rgb
    assert min(y) > 45.0, y


def test_upscale_is_nearest_neighbour_and_raises_quality(tmp_path, clips):
    frames = clips[0]
    path = write_video(tmp_path / "big.mp4", frames, upscale=4)
    decoded = read_video(path)
    assert decoded.shape == (17, 256, 256, 3)
    reference = frames.repeat(4, axis=1).repeat(4, axis=2)
    assert psnr(decoded, reference) > 37.0
    # the upscale is exact before encoding
    assert np.array_equal(video_io.upscale_frames(frames, 3)[:, ::3, ::3], frames)


def test_mp4_is_browser_ready(tmp_path, clips):
    path = write_video(tmp_path / "clip.mp4", clips[1], fps=8)
    atoms = top_level_atoms(path)
    assert "moov" in atoms and "mdat" in atoms
    assert atoms.index("moov") < atoms.index("mdat"), atoms  # +faststart
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.codec_context.colorspace == 1  # tagged BT.709: players need not guess
        assert stream.average_rate == 8
    _, info = read_video_with_info(path)
    assert info.fps == 8.0 and info.num_frames == 17 and info.codec == "h264"
    assert abs(info.duration - 17 / 8) < 1e-9


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 33, 47, 3), dtype=np.uint8)
    decoded = read_video(write_video(tmp_path / "odd.mp4", frames))
    assert decoded.shape == (3, 34, 48, 3)


def test_single_frame_mp4_and_png(tmp_path, clips):
    image = clips[2][0]  # (64, 64, 3)
    one = read_video(write_video(tmp_path / "one.mp4", image[None]))
    assert one.shape == (1, 64, 64, 3) and psnr(one, image[None]) > 31
    png, info = read_video_with_info(write_video(tmp_path / "one.png", image, upscale=2))
    assert np.array_equal(png[0], image.repeat(2, 0).repeat(2, 1))  # PNG is lossless
    assert info.num_frames == 1 and info.fps is None
    with pytest.raises(ValueError, match="exactly 1"):
        write_video(tmp_path / "many.png", clips[2])


def test_gif(tmp_path):
    frames = render_clip(3, num_frames=17, motion="right").frames  # moving: no identical neighbours
    decoded, info = read_video_with_info(write_video(tmp_path / "clip.gif", frames, fps=8, upscale=2))
    assert decoded.shape == (17, 128, 128, 3)
    assert info.fps == pytest.approx(8.0) and info.codec == "gif"
    assert psnr(decoded, frames.repeat(2, 1).repeat(2, 2)) > 40  # one 256-colour palette, no chroma loss


def test_float_and_tensor_inputs(tmp_path, clips):
    frames = clips[0][:5]
    as_uint8 = read_video(write_video(tmp_path / "u8.mp4", frames))
    as_float = read_video(write_video(tmp_path / "f32.mp4", frames.astype(np.float32) / 255))
    as_tensor = read_video(write_video(tmp_path / "t.mp4", torch.from_numpy(frames)))
    assert np.array_equal(as_uint8, as_float) and np.array_equal(as_uint8, as_tensor)  # x264 is deterministic


def test_write_is_atomic(tmp_path, clips, monkeypatch):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous version")
    # crash inside the encoder loop, after the container has been opened on the temporary file
    monkeypatch.setattr(video_io, "_ENCODE_SCALING", "NOT_AN_INTERPOLATION")
    with pytest.raises(KeyError):
        write_video(target, clips[0])
    monkeypatch.undo()
    assert target.read_bytes() == b"previous version"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary left behind
    write_video(target, clips[0])
    assert read_video(target).shape == clips[0].shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's 0600


# ----------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("frames, message", [
    (np.zeros((2, 16, 16), np.uint8), "shape"),
    (np.zeros((2, 16, 16, 4), np.uint8), "shape"),
    (np.zeros((0, 16, 16, 3), np.uint8), "at least 1"),
    (np.zeros((2, 16, 16, 3), np.int32), "dtype"),
    (np.full((2, 16, 16, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((2, 16, 16, 3), -1.0, np.float32), r"\(x \+ 1\) / 2"),
    (np.full((2, 16, 16, 3), np.nan, np.float32), "NaN"),
])
def test_bad_frames_raise(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "x.mp4", frames)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, message", [
    ({"upscale": 0}, "upscale=0"), ({"upscale": 1.5}, "upscale=1.5"), ({"upscale": True}, "upscale=True"),
    ({"fps": 0}, "fps=0"), ({"fps": float("nan")}, "fps=nan"), ({"fps": "8"}, "fps='8'"),
    ({"crf": 0}, "crf=0"), ({"crf": 52}, "crf=52"), ({"preset": "fastest"}, "preset='fastest'"),
])
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "x.mp4", np.zeros((2, 16, 16, 3), np.uint8), **kwargs)


def test_bad_suffix_raises(tmp_path):
    with pytest.raises(ValueError, match=r"suffix '\.avi'.*\.mp4"):
        write_video(tmp_path / "x.avi", np.zeros((2, 16, 16, 3), np.uint8))


def test_unreadable_files_raise(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(ValueError, match="missing.mp4.*does not exist"):
        read_video(missing)
    with pytest.raises(ValueError, match="is not a file"):
        read_video(tmp_path)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4.*empty"):
        read_video(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="garbage.mp4.*could not be read"):
        read_video(garbage)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(ValueError, match="notes.mp4"):
        read_video(text)
