"""`sora-hf push` / `push-space` / `card`: huggingface_hub's real upload code against a loopback Hub."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sora_hf.hub import check_pipeline_folder, check_repo_id, render_card

from fake_hub import FakeHub

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_pipe):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipe.save_pretrained(folder, copy_code=False, include_text_encoder=False)  # as pipelines/ holds it
    return folder


def sora_hf(*args, endpoint=None, token="hf_fake_token", home=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="0" if endpoint else "1", HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "sora_hf.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_push_commits_the_hub_layout_and_card(model_dir, tmp_path):
    with FakeHub() as hub:
        result = sora_hf("push", "--repo-id", "sora-org/sora-tiny", "--model", str(model_dir), "--private",
                         endpoint=hub.url, home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert hub.repos["model:sora-org/sora-tiny"]["private"] is True
    (commit,) = hub.commits
    files = commit["files"]
    for path in ("model_index.json", "pipeline_sora.py", "transformer/transformer_sora.py",
                 "vae/autoencoder_kl_sora.py", "transformer/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer_config.json", "README.md"):
        assert path in files, path
    index = json.loads(files["model_index.json"])
    assert index["_class_name"] == ["pipeline_sora", "SoraPipeline"]
    card = files["README.md"].decode()
    assert card.startswith("---") and "library_name: diffusers" in card and "pipeline_tag: text-to-video" in card
    assert 'trust_remote_code=True' in card and "sora-org/sora-tiny" in card


def test_push_space_uploads_app_and_front_matter(tmp_path):
    with FakeHub() as hub:
        result = sora_hf("push-space", "--repo-id", "sora-org/studio", "--model-repo-id", "sora-org/sora-tiny",
                         endpoint=hub.url, home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert hub.repos["space:sora-org/studio"]["sdk"] == "gradio"
    assert {"key": "SORA_HF_MODEL", "value": "sora-org/sora-tiny"} in hub.repos["space:sora-org/studio"]["variables"]
    files = hub.commits[0]["files"]
    assert "app.py" in files and "requirements.txt" in files and "sora_hf/pipeline_sora.py" in files
    readme = files["README.md"].decode()
    assert "sdk: gradio" in readme and "app_file: app.py" in readme and "sora-org/sora-tiny" in readme


def test_dry_run_lists_files_and_sizes_without_network(model_dir, tmp_path):
    result = sora_hf("push", "--repo-id", "sora-org/sora-tiny", "--model", str(model_dir), "--dry-run",
                     token=None, home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model_index.json" in result.stdout and "transformer/diffusion_pytorch_model.safetensors" in result.stdout
    assert "dry run: nothing uploaded" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["push", "--repo-id", "no-slash"], "--repo-id='no-slash' must be 'owner/name'"),
    (["push", "--repo-id", "a/b/c"], "must be 'owner/name'"),
    (["push", "--repo-id", "org/name", "--model", "/nonexistent"], "is not a pipeline folder"),
    (["push", "--repo-id", "org/name"], "no Hugging Face token"),
])
def test_bad_input_fails_before_any_network_call(model_dir, tmp_path, args, needle):
    if args[-1] == "org/name":
        args = args + ["--model", str(model_dir)]
    with FakeHub() as hub:
        result = sora_hf(*args, endpoint=hub.url, token=None, home=tmp_path)
    assert result.returncode == 2 and needle in result.stderr, result.stderr[-2000:]
    assert hub.requests == []


def test_folder_checks(model_dir, tmp_path, tiny_pipe):
    check_pipeline_folder(model_dir)
    sharded = tmp_path / "sharded"  # how train-dit exports: weights in shards under 20 MB
    tiny_pipe.save_pretrained(sharded, copy_code=False, include_text_encoder=False, max_shard_size="40KB")
    assert not (sharded / "transformer" / "diffusion_pytorch_model.safetensors").exists()
    check_pipeline_folder(sharded)
    index = json.loads((model_dir / "model_index.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({**index, "transformer": ["x", "EvilModel"]}))
    with pytest.raises(ValueError, match="unknown class"):
        check_pipeline_folder(broken)
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="lacks transformer/diffusion_pytorch_model.safetensors: the model is not trained"):
        check_pipeline_folder(broken)
    with pytest.raises(ValueError):
        check_repo_id("")


def test_card_numbers_come_from_result_files(tmp_path):
    results = {"adherence": {"num_scenes": 300, "by_caption": {"short": {"colour": 0.931, "shape": 0.84, "motion": 0.8,
                                                                  "ci95": {"colour": [0.9, 0.96]}}},
                             "groups": {"image": {"colour": 1.0, "shape": 0.5, "n": 4}},  # no motion in an image
                             "held_out": None, "vae_ceiling": {"colour": 1.0, "shape": 0.873, "motion": 0.8}},
               "probe": {"num_scenes": 60, "sigmas": [0.3, 0.9], "attributes": {"shape": {
                   p: {"penalty": 0.016, "true_caption_wins": 0.65} for p in ("both", "tokens", "pooled")}}},  # attribute_probe.py
               "vae": {"clips": 200, "psnr_mean": 37.25, "ssim_mean": 0.9812, "images": {"psnr": 39.5, "ssim": 0.99},
                       "per_style": {"none": {"psnr": 38.5, "ssim": 0.99, "clips": 40}}},  # vae_reconstruction.py
               "speed": None, "provenance": {"Video VAE": {"command": "sora-hf train-vae", "steps": 10,
                                                          "wall_time_s": 7200, "machine": "x86_64, 2 CPU cores",
                                                          "git_commit": "0123456789abcdef"}}}
    card = render_card("org/model", results)
    assert "| short | 93.1% (90–96) | 84.0% | 80.0% |" in card and "| image | 100.0% | 50.0% | — | 4 |" in card
    assert "37.25 dB" in card and "2.0 h" in card and "sora-hf train-vae" in card
    assert "| none | 38.50 | 0.9900 |" in card and "images\n39.50 dB" in card
    assert "(the ceiling)* | 100.0% | 87.3% | 80.0% |" in card and "| shape | +1.6% (65% wins) |" in card
    # continued training: the card names both runs and adds them up
    first = {"command": "sora-hf train-dit --steps 100", "steps": 100, "wall_time_s": 3600, "machine": "m",
             "git_commit": "aaaaaaaaaaaa"}
    second = {**first, "command": "sora-hf train-dit --init-from x", "steps": 50, "wall_time_s": 1800,
              "git_commit": "bbbbbbbbbbbb", "init_from": {"path": "x", "provenance": first}}
    card = render_card("org/model", {**results, "provenance": {"Diffusion transformer": second}})
    assert "150 steps in 1.5 h, in 2 runs" in card
    assert card.index("--steps 100`") < card.index("--init-from x`")  # oldest run first
    assert "Run 2: 50 steps in 0.5 h on m (code bbbbbbbbbb)" in card
    # a run of seconds (the VAE's PCA skeleton) reads in seconds, one step as one step
    skeleton = {**first, "command": "sora-hf train-vae --steps 1", "steps": 1, "wall_time_s": 1.4}
    card = render_card("org/model", {**results, "provenance": {"Video VAE": skeleton}})
    assert "**Video VAE**: 1 step in 1.4 s on m." in card and "Code aaaaaaaaaa, made by" in card
    empty = render_card("org/model", {"adherence": None, "vae": None, "speed": None, "provenance": {}})
    assert "not measured yet" in empty


def test_card_shows_the_sample_gifs_it_generated(tmp_path, tiny_pipe):
    from PIL import Image

    from sora_hf.hub import SAMPLE_PROMPTS, load_results, render_samples

    folder = tmp_path / "model"
    tiny_pipe.save_pretrained(folder, copy_code=False, include_text_encoder=False)
    samples = render_samples(folder)
    assert [s["prompt"] for s in samples] == [p for p, _, _ in SAMPLE_PROMPTS]
    for s, (_, _, num_frames) in zip(samples, SAMPLE_PROMPTS):
        gif = Image.open(folder / s["path"])
        assert gif.n_frames == num_frames and gif.size == (4 * s["width"], 4 * s["height"])
    card = render_card("org/model", load_results(tmp_path / "no-results", folder))
    for s in samples:
        assert f"![{s['prompt']}]({s['path']})" in card and s["analyzer_reads"] in card
