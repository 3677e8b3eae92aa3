"""The studio over HTTP: `sora-hf app` in a subprocess on 127.0.0.1, driven by gradio_client.

The app runs a tiny random pipeline saved to a temporary folder (the real
text encoder, tiny random VAE and DiT), so what is tested is the serving:
files, progress, variations, cancel, the queue, the library across restarts,
and errors. The last test runs the studio on the shipped model and checks with
the analyzer that the colour asked for is the colour generated.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from app_server import AppServer
from conftest import make_tiny_pipeline
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, Status

from sora_hf.video_io import read_video_with_info

MAX_QUEUE = 4
QUICK = dict(aspect_ratio="1:1", resolution_tier=1, duration="2s", variations=1, seed=1, randomize_seed=False,
             steps=2, guidance=4.0, negative_prompt="")
# minutes uncancelled: long enough to catch running, with steps slow enough (4 clips of 65x128x128 in one batch)
# that what a cancel saves stands out from a quick job's own time on a fast host
SLOW = dict(QUICK, resolution_tier=2, duration="8s", steps=100, variations=4)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random pipeline folder; the text encoder comes from the pip package on load."""
    folder = tmp_path_factory.mktemp("tiny-pipeline")
    make_tiny_pipeline().save_pretrained(folder, copy_code=False, include_text_encoder=False)  # like pipelines/
    return folder


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("app")
    app = AppServer(tiny_model_dir, workdir / "library", workdir).start()
    yield app
    app.stop()


@pytest.fixture
def client(server) -> Client:
    return server.client()


def generate(client: Client, prompt: str = "a red ball bouncing on sand", **settings):
    return client.predict(prompt=prompt, **{**QUICK, **settings}, api_name="/generate")


def library_ids(client: Client) -> list[str]:
    return [e["id"] for e in client.predict(limit=0, api_name="/library")]


def wait_until_running(job, steps: int = 1, timeout: float = 120.0) -> float:
    """Wait until the job has done `steps` denoising steps (so it holds the model);
    returns the seconds per step it took meanwhile (after the first step)."""
    deadline = time.time() + timeout
    first = None
    while time.time() < deadline:
        status = job.status()
        done = status.progress_data[0].index if status.progress_data else 0
        if done >= 1 and first is None:
            first = (time.time(), done)
        if done >= steps:
            return (time.time() - first[0]) / max(done - first[1], 1)
        assert not job.done(), f"the job ended early: {job.status()}"
        time.sleep(0.02)
    raise AssertionError(f"the job did not reach step {steps} within {timeout} s")


# ----------------------------------------------------------------------------
# Generating
# ----------------------------------------------------------------------------

def test_generate_returns_decodable_mp4s_saved_in_the_library(server, client):
    files, record = generate(client, aspect_ratio="16:9", variations=2, seed=123, steps=3)
    assert len(files) == 2 and record["seeds"] == [123, 124] and record["seed"] == 123
    for path, entry in zip(files, record["entries"]):
        frames, info = read_video_with_info(path)
        assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
        assert frames.shape == (17, 64, 112, 3)  # the native file, not the display upscale
        assert (entry["height"], entry["width"], entry["num_frames"]) == (64, 112, 17)
        assert (server.library / "media" / entry["file"]).is_file()
    assert set(library_ids(client)) >= {e["id"] for e in record["entries"]}
    native, details = client.predict(record["entries"][0]["id"], api_name="/entry")
    assert read_video_with_info(native)[0].shape == (17, 64, 112, 3)
    assert details["prompt"] == "a red ball bouncing on sand" and details["settings"]["aspect_ratio"] == "16:9"


def test_image_duration_gives_a_png(client):
    files, record = generate(client, duration="image", aspect_ratio="9:16")
    frames, info = read_video_with_info(files[0])
    assert files[0].endswith(".png") and frames.shape == (1, 112, 64, 3)
    assert record["entries"][0]["kind"] == "image"


def test_variations_differ_and_each_can_be_remade_from_its_seed(client):
    files, _ = generate(client, variations=3, seed=40)
    clips = [read_video_with_info(f)[0].astype(np.float32) for f in files]
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(clips[a] - clips[b]).mean() > 5, "variations should not be the same video"
    (alone,), record = generate(client, variations=1, seed=41)  # variation 2's own seed
    assert record["seed"] == 41
    assert np.abs(read_video_with_info(alone)[0] - clips[1]).mean() < 2.0


def test_random_seed_is_reported(client):
    _, record = generate(client, randomize_seed=True, seed=0)
    assert record["entries"][0]["seed"] == record["seed"] and 0 <= record["seed"] < 2**31


def test_progress_updates_arrive(client):
    # 100 steps at the 128 px tier (over a second even for the tiny test model): polling sees many updates
    job = client.submit(prompt="a blue square sliding left", **{**QUICK, "steps": 100, "resolution_tier": 2},
                        api_name="/generate")
    seen = set()
    while not job.done():
        for unit in job.status().progress_data or []:
            seen.add((unit.index, unit.length, unit.desc))
        time.sleep(0.01)
    job.result()
    steps = sorted(index for index, length, _ in seen if length == 100)
    assert len(steps) >= 3 and steps[-1] <= 100, f"progress seen: {sorted(seen)}"
    assert {desc for *_, desc in seen} == {"Denoising"}


def test_cancel_stops_the_loop_and_saves_nothing(client):
    started = time.time()
    generate(client, prompt="on an idle app")
    idle = time.time() - started  # the next job's own time, with nothing ahead of it
    before = set(library_ids(client))
    job = client.submit(prompt="a slow purple clip", **SLOW, api_name="/generate")
    seconds_per_step = wait_until_running(job, steps=4)
    job.cancel()
    started = time.time()
    _, record = generate(client, prompt="right after the cancel")
    delay = time.time() - started - idle  # what the cancelled job still held it up for
    left = (SLOW["steps"] - 4) * seconds_per_step  # what an uncancelled loop would still hold the model for
    assert delay < left / 2, (f"the next job waited {delay:.2f} s longer than on an idle app (the cancelled job "
                              f"had ~{left:.1f} s left)")
    assert job.status().code == Status.CANCELLED
    new = set(library_ids(client)) - before
    assert new == {record["entries"][0]["id"]}, "the cancelled job must not create an entry"


def test_four_concurrent_jobs_all_complete(server):
    clients = [server.client() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ic: generate(ic[1], prompt=f"job {ic[0]}", seed=ic[0]), enumerate(clients)))
    ids = {record["entries"][0]["id"] for _, record in results}
    assert len(ids) == 4
    for (files, record), i in zip(results, range(4)):
        assert record["entries"][0]["prompt"] == f"job {i}"
        assert read_video_with_info(files[0])[0].shape == (17, 64, 64, 3)


def test_a_full_queue_answers_busy_try_again(server, client):
    blocker = client.submit(prompt="holding the model", **SLOW, api_name="/generate")
    wait_until_running(blocker)
    waiting = [client.submit(prompt=f"waiting {i}", **QUICK, api_name="/generate") for i in range(MAX_QUEUE)]
    deadline = time.time() + 60
    while not all(j.status().code == Status.IN_QUEUE for j in waiting) and time.time() < deadline:
        time.sleep(0.05)
    try:
        with pytest.raises(QueueError, match="Queue is full! Please try again"):
            server.client().predict(prompt="one too many", **QUICK, api_name="/generate")
    finally:
        for job in [*waiting, blocker]:
            job.cancel()
    generate(client, prompt="served again once there is room")


# ----------------------------------------------------------------------------
# Bad input: an API error each, and the app keeps serving
# ----------------------------------------------------------------------------

BAD_SETTINGS = [
    (dict(prompt=""), "prompt='' is empty"),
    (dict(prompt="   "), "is empty"),
    (dict(prompt="a red ball " * 60), "at most 500"),
    (dict(aspect_ratio="4:3"), "4:3"),
    (dict(duration="3s"), "3s"),
    (dict(resolution_tier=3), "3"),
    (dict(variations=5), "5"),
    (dict(steps=0), "0"),
    (dict(guidance=1.0, negative_prompt="blurry"), "needs guidance > 1"),
]


def test_bad_input_is_an_api_error_and_the_app_keeps_serving(client):
    for settings, message in BAD_SETTINGS:
        prompt = settings.pop("prompt", "a red ball")
        with pytest.raises(AppError, match=message.replace("(", r"\(").replace(")", r"\)")):
            generate(client, prompt=prompt, **settings)
    for endpoint in ("/entry", "/delete"):
        with pytest.raises(AppError, match="no library entry has id='no-such-id'"):
            client.predict("no-such-id", api_name=endpoint)
    files, _ = generate(client, prompt="still serving")
    assert read_video_with_info(files[0])[0].shape == (17, 64, 64, 3)


# ----------------------------------------------------------------------------
# Library: delete, restart
# ----------------------------------------------------------------------------

def test_delete_removes_file_and_row(server, client):
    _, record = generate(client, prompt="to be deleted")
    entry = record["entries"][0]
    media = server.library / "media" / entry["file"]
    assert media.is_file()
    deleted = client.predict(entry["id"], api_name="/delete")
    assert deleted["deleted"]["id"] == entry["id"]
    assert not media.exists() and entry["id"] not in library_ids(client)
    with sqlite3.connect(server.library / "library.sqlite3") as con:
        assert con.execute("SELECT COUNT(*) FROM entries WHERE id = ?", (entry["id"],)).fetchone()[0] == 0
    with pytest.raises(AppError, match="no library entry"):
        client.predict(entry["id"], api_name="/entry")


def test_library_survives_a_restart(server, client):
    _, record = generate(client, prompt="made before the restart")
    before = library_ids(client)
    assert record["entries"][0]["id"] in before
    server.restart()
    after_client = server.client()
    assert library_ids(after_client) == before
    native, details = after_client.predict(record["entries"][0]["id"], api_name="/entry")
    assert details["prompt"] == "made before the restart"
    assert read_video_with_info(native)[0].shape == (17, 64, 64, 3)


# ----------------------------------------------------------------------------
# The shipped model: the colour asked for is the colour generated
# ----------------------------------------------------------------------------

COLOUR_PROMPTS = {
    "red": "a red ball bouncing on sand",
    "blue": "a blue square sliding left on a black background",
    "yellow": "a yellow triangle moving right on sky",
    "white": "a white circle falling on gray",
}


@pytest.mark.slow
def test_shipped_model_generates_the_colour_in_the_prompt(shipped_pipe, tmp_path):
    """Through the studio's own path (generate -> library mp4 -> read back), the analyzer
    must find an object of the prompt's colour in at least 3 of 4 clips."""
    from sora_hf.app import Studio, make_request
    from sora_hf.eval import analyze, find_objects
    from sora_hf.library import Library
    from sora_hf.video_io import read_video

    studio = Studio(shipped_pipe, Library(tmp_path / "library"), model_name="sora-tiny")
    report = {}
    for colour, prompt in COLOUR_PROMPTS.items():
        (entry,) = studio.generate(make_request(prompt, aspect_ratio="1:1", duration="2s", seed=0))
        analysis = analyze(read_video(entry.path))
        report[colour] = sorted({c for o in analysis.objects for c in o.colours})
        report[colour + " ok"] = bool(find_objects(analysis, colour=colour))
    matched = sum(report[c + " ok"] for c in COLOUR_PROMPTS)
    assert matched >= 3, f"analyzed colours per prompt: {report}"


# ----------------------------------------------------------------------------
# Space-readiness
# ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_space_readme_front_matter():
    """The Space's README (a template kept apart from the repo README) says what the Hub needs."""
    import gradio
    import yaml

    text = (ROOT / "space" / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    for key in ("title", "sdk", "sdk_version", "app_file", "license", "short_description", "models", "tags"):
        assert meta.get(key), f"space/README.md front matter lacks {key}"
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (ROOT / meta["app_file"]).is_file()
    assert len(meta["short_description"]) <= 60  # the Hub's limit
    assert not (ROOT / "README.md").read_text().startswith("---")  # the repo README stays plain


def test_gpu_decorator_is_a_no_op_without_spaces():
    from sora_hf.app import gpu

    def f(x):
        return x + 1

    if importlib.util.find_spec("spaces") is None:
        assert gpu(f) is f
    assert gpu(f)(1) == 2
