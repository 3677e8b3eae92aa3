"""Training commands: `sora-hf train-vae` (train_vae.py) and `sora-hf train-dit` (train_dit.py)."""
