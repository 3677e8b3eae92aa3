"""Hugging Face Space entry point: the sora-hf studio on the shipped model.

The UI lives in the package (`sora_hf.app.build_demo`); this file only picks
the model and the library folder and launches. Locally, prefer

    sora-hf app --model pipelines/sora-tiny --library outputs/library

Environment:
    SORA_HF_MODEL     pipeline folder or owner/name Hub repo id (default: pipelines/sora-tiny
                      beside this file; `sora-hf push-space` sets it to the model repo)
    SORA_HF_LIBRARY   library folder (default: /data/library on a Space with persistent
                      storage, else outputs/library beside this file)
    SORA_HF_INT8      1: on a CPU, run the DiT's blocks in int8 (~0.65x the step time; default 0)
On a Space (SPACE_ID is set) the app listens on 0.0.0.0:7860; elsewhere on 127.0.0.1 only.
"""

import os
from pathlib import Path

from sora_hf.app import build_demo, launch, load_pipeline
from sora_hf.library import Library

ROOT = Path(__file__).resolve().parent
MODEL = os.environ.get("SORA_HF_MODEL") or str(ROOT / "pipelines" / "sora-tiny")
PERSISTENT = Path("/data")  # a Space's persistent storage, when it has some
LIBRARY = Path(os.environ.get("SORA_HF_LIBRARY",
                              PERSISTENT / "library" if PERSISTENT.is_dir() else ROOT / "outputs" / "library"))
ON_SPACE = "SPACE_ID" in os.environ
INT8 = os.environ.get("SORA_HF_INT8", "0")
if INT8 not in ("0", "1"):
    raise ValueError(f"SORA_HF_INT8={INT8!r}: allowed values are 0 and 1")

demo = build_demo(load_pipeline(MODEL, int8=INT8 == "1"), Library(LIBRARY), model_name=Path(MODEL).name)

if __name__ == "__main__":
    launch(demo, host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if ON_SPACE else "127.0.0.1"),
           port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
