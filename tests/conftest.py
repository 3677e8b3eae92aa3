"""Shared fixtures: tiny random pipelines (unit tests) and the shipped one (end-to-end)."""

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at test time
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pipelines" / "sora-tiny"
sys.path.insert(0, str(Path(__file__).parent / "helpers"))  # app_server, fake_hub, remote_load


def make_tiny_pipeline(seed: int = 0):
    """A SoraPipeline with tiny random VAE and DiT and the real (bundled) text encoder."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from sora_hf.models import AutoencoderKLSora, SoraTransformer3DModel
    from sora_hf.models.autoencoder_kl_sora import PRESETS as VAE_PRESETS
    from sora_hf.models.transformer_sora import PRESETS as DIT_PRESETS
    from sora_hf.pipeline_sora import SoraPipeline, _bundled_text_model

    torch.manual_seed(seed)
    vae = AutoencoderKLSora(**VAE_PRESETS["tiny-test"]).eval()
    transformer = SoraTransformer3DModel(in_channels=vae.config.latent_channels, **DIT_PRESETS["tiny-test"]).eval()
    with torch.no_grad():  # adaLN-Zero would make an untrained DiT output zeros: give every weight a say
        for p in transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return SoraPipeline(transformer=transformer, vae=vae, text_encoder=_bundled_text_model("text_encoder").eval(),
                        tokenizer=_bundled_text_model("tokenizer"), scheduler=FlowMatchEulerDiscreteScheduler())


@pytest.fixture(scope="session")
def tiny_pipe():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_shipped(int8: bool = False):
    if not (SHIPPED / "transformer").exists():
        pytest.skip("pipelines/sora-tiny has no trained transformer yet")
    from sora_hf.app import load_pipeline

    return load_pipeline(SHIPPED, int8=int8)


@pytest.fixture(scope="session")
def shipped_pipe():
    return load_shipped()


@pytest.fixture(scope="session")
def shipped_pipe_int8():
    return load_shipped(int8=True)
