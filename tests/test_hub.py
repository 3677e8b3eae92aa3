"""Hub layout: save_pretrained writes a repo that loads with remote code where sora_hf is absent."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sora_hf.pipeline_sora import SoraPipeline

HELPER = Path(__file__).parent / "helpers" / "remote_load.py"


def generate(pipe):
    return pipe("a red ball bouncing", height=32, width=32, num_frames=5, num_inference_steps=2,
                generator=torch.Generator().manual_seed(0)).frames


def test_save_pretrained_writes_the_hub_layout(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path, model_card="---\nlibrary_name: diffusers\n---\n# card\n")
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_sora", "SoraPipeline"]
    assert index["transformer"] == ["transformer_sora", "SoraTransformer3DModel"]
    assert index["vae"] == ["autoencoder_kl_sora", "AutoencoderKLSora"]
    for path in ("pipeline_sora.py", "transformer/transformer_sora.py", "vae/autoencoder_kl_sora.py",
                 "transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer_config.json",
                 "scheduler/scheduler_config.json", "README.md"):
        assert (tmp_path / path).exists(), path
    source = Path(sys.modules["sora_hf.models.transformer_sora"].__file__).read_text()
    assert (tmp_path / "transformer/transformer_sora.py").read_text() == source  # copied, never hand-kept
    loaded = SoraPipeline.from_pretrained(tmp_path)  # with sora_hf installed: the package's classes, no remote code
    assert type(loaded.transformer).__module__ == "sora_hf.models.transformer_sora"
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(generate(loaded), generate(tiny_pipe))


def test_data_only_folder_loads_with_the_package(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path, copy_code=False, include_text_encoder=False)
    assert not list(tmp_path.rglob("*.py")) and not (tmp_path / "text_encoder").exists()
    loaded = SoraPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(generate(loaded), generate(tiny_pipe))


def test_resave_in_the_other_weight_layout_leaves_no_stale_files(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path, copy_code=False, include_text_encoder=False)
    tiny_pipe.save_pretrained(tmp_path, copy_code=False, include_text_encoder=False, max_shard_size="40KB")
    names = {p.name for p in (tmp_path / "transformer").iterdir()}
    assert "diffusion_pytorch_model.safetensors" not in names and "diffusion_pytorch_model.safetensors.index.json" in names
    loaded = SoraPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(generate(loaded), generate(tiny_pipe))
    tiny_pipe.save_pretrained(tmp_path, copy_code=False, include_text_encoder=False)  # and back to one file
    for folder in ("transformer", "vae"):
        weights = sorted(p.name for p in (tmp_path / folder).glob("diffusion_pytorch_model*"))
        assert weights == ["diffusion_pytorch_model.safetensors"], weights


@pytest.mark.parametrize("which", ["tiny", pytest.param("shipped", marks=pytest.mark.slow)])
def test_remote_code_load_without_sora_hf_gives_identical_frames(which, request, tmp_path):
    pipe = request.getfixturevalue("tiny_pipe" if which == "tiny" else "shipped_pipe")
    repo = tmp_path / "repo"
    pipe.save_pretrained(repo)
    out = tmp_path / "frames.npy"
    result = subprocess.run([sys.executable, str(HELPER), str(repo), str(out)], capture_output=True, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_MODULES_CACHE": str(tmp_path / "modules")},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote, resaved = np.load(out)
    np.testing.assert_array_equal(remote, generate(pipe))
    np.testing.assert_array_equal(resaved, remote)
