"""The two trained networks. Each lives in one self-contained file that is also
copied verbatim into Hub repos (loaded there with trust_remote_code)."""

from .autoencoder_kl_sora import AutoencoderKLSora
from .transformer_sora import SoraTransformer3DModel

__all__ = ["AutoencoderKLSora", "SoraTransformer3DModel"]
