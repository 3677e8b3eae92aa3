"""sora-hf: an open, Sora-style text-to-video system on the Hugging Face stack."""

__version__ = "0.1.0"
