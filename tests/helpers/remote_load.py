"""Play a user who has diffusers but not sora-hf: load a saved pipeline with remote code,
generate, re-save, reload. Usage: python remote_load.py PIPELINE_DIR OUT.npy"""

import importlib.abc
import sys


class BlockSoraHF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "sora_hf" or name.startswith("sora_hf."):
            raise ImportError(f"{name} is blocked: this process plays a user without sora-hf")


sys.meta_path.insert(0, BlockSoraHF())

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import DiffusionPipeline  # noqa: E402


def generate(pipe):
    return pipe("a red ball bouncing", height=32, width=32, num_frames=5, num_inference_steps=2,
                generator=torch.Generator().manual_seed(0)).frames


pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
assert not type(pipe).__module__.startswith("sora_hf"), type(pipe).__module__
frames = generate(pipe)
pipe.save_pretrained(sys.argv[1] + "-resaved")
again = DiffusionPipeline.from_pretrained(sys.argv[1] + "-resaved", trust_remote_code=True)
np.save(sys.argv[2], np.stack([frames, generate(again)]))
print(type(pipe).__module__)
