"""`sora-hf generate` on a tiny random pipeline folder."""

import json

import numpy as np
import pytest

from sora_hf.cli import main
from sora_hf.video_io import read_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_pipe):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipe.save_pretrained(folder, copy_code=False, include_text_encoder=False)
    return folder


def test_generate_writes_one_file_per_variation_with_its_seed(model_dir, tmp_path, capsys):
    argv = ["generate", "a red ball bouncing", "--model", str(model_dir), "--size", "48x32", "--frames", "9",
            "--steps", "2", "--variations", "2", "--seed", "5", "--out", str(tmp_path)]
    assert main(argv) == 0
    a, b = read_video(tmp_path / "sora_5.mp4"), read_video(tmp_path / "sora_6.mp4")
    assert a.shape == b.shape == (9, 32, 48, 3) and not np.array_equal(a, b)
    assert json.loads((tmp_path / "sora_6.json").read_text())["seed"] == 6
    assert "(seed 5)" in capsys.readouterr().out
    # variation 2 alone, from its own seed, is the same clip
    assert main(argv[:-6] + ["--variations", "1", "--seed", "6", "--out", str(tmp_path / "again")]) == 0
    diff = np.abs(read_video(tmp_path / "again" / "sora_6.mp4").astype(int) - b.astype(int))
    assert diff.mean() < 1.5, diff.mean()  # H.264 is lossy; batch-of-2 vs batch-of-1 float noise is not
    # the same seed again, another prompt: a new file beside the first, which stays as it was
    assert main(["generate", "a blue box", *argv[2:-6], "--variations", "1", "--seed", "5", "--out",
                 str(tmp_path)]) == 0
    assert np.array_equal(read_video(tmp_path / "sora_5.mp4"), a)
    assert json.loads((tmp_path / "sora_5-2.json").read_text())["prompt"] == "a blue box"
    assert read_video(tmp_path / "sora_5-2.mp4").shape == a.shape


def test_generate_int8_is_close_to_float32_and_says_so(model_dir, tmp_path):
    argv = ["generate", "a red ball bouncing", "--model", str(model_dir), "--size", "32x32", "--frames", "5",
            "--steps", "2", "--seed", "3"]
    assert main(argv + ["--out", str(tmp_path / "fp32")]) == 0
    assert main(argv + ["--int8", "--out", str(tmp_path / "int8")]) == 0
    assert json.loads((tmp_path / "int8" / "sora_3.json").read_text())["int8"] is True
    assert json.loads((tmp_path / "fp32" / "sora_3.json").read_text())["int8"] is False
    a, b = (read_video(tmp_path / name / "sora_3.mp4").astype(int) for name in ("fp32", "int8"))
    assert a.shape == b.shape and 0 < np.abs(a - b).mean() < 8


def test_generate_image_and_storyboard(model_dir, tmp_path):
    assert main(["generate", "a blue square", "--model", str(model_dir), "--size", "32x32", "--frames", "image",
                 "--steps", "2", "--seed", "1", "--out", str(tmp_path)]) == 0
    assert read_video(tmp_path / "sora_1.png").shape == (1, 32, 32, 3)
    meta = json.loads((tmp_path / "sora_1.json").read_text())  # what was not given is the pipeline's default
    assert (meta["steps"], meta["guidance"], meta["guidance_interval"]) == (2, 4.0, [0.0, 1.0])
    assert main(["generate", "--storyboard", "a red ball moving right@0-5", "a red ball bouncing@5-9",
                 "--model", str(model_dir), "--size", "32x32", "--frames", "9", "--steps", "2", "--seed", "2",
                 "--out", str(tmp_path)]) == 0
    assert read_video(tmp_path / "sora_2.mp4").shape[0] == 9
    assert main(["generate", "a red ball", "--model", str(model_dir), "--size", "32x32", "--frames", "image",
                 "--steps", "2", "--seed", "3", "--guidance-interval", "0.1", "0.5", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "sora_3.json").read_text())["guidance_interval"] == [0.1, 0.5]


@pytest.mark.parametrize("argv,needle", [
    (["a ball", "--size", "40x32"], "width=40"),
    (["a ball", "--frames", "8"], "num_frames=8"),
    (["--storyboard", "no range here"], "TEXT@START-END"),
    ([], "give a prompt or --storyboard"),
    (["a ball", "--variations", "0"], "--variations=0"),
    (["a ball", "--model", "/nonexistent"], "is not a pipeline folder"),
    (["a ball", "--guidance-interval", "0.6", "0.2"], "guidance_interval=(0.6, 0.2)"),
    (["a ball", "--seed", "-1"], "--seed=-1"),
])
def test_generate_bad_input(model_dir, tmp_path, capsys, argv, needle):
    extra = [] if "--model" in argv else ["--model", str(model_dir)]
    assert main(["generate", *argv, *extra, "--steps", "2", "--out", str(tmp_path / "out")]) == 2
    assert needle in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*"))  # nothing written


def test_generate_checks_the_output_folder_before_sampling(model_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["generate", "a ball", "--model", str(model_dir), "--steps", "2", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "--out=" in err and "cannot be created" in err and "denoising" not in err
    assert (tmp_path / "taken").read_text() == "a file, not a folder"
