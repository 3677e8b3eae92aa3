#!/usr/bin/env python3
"""Set up sora-hf in a local virtual environment and run it — the README's two commands.

    python3 dev.py demo   # set up (once), then run the demo on the shipped model
    python3 dev.py test   # set up (once), then run the test suite

Set-up creates `.venv/`, installs torch==2.13.0 *first* (the CPU wheel; any
other torch request would pull gigabytes of CUDA), then the package with its
`dev` extra, resolved against that torch. It re-runs only when pyproject.toml
changes. Extra arguments after the command go to the tool (pytest, sora-hf).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
TORCH = "torch==2.13.0"
STAMP = VENV / ".sora-hf-setup"


def sh(*cmd, **kwargs) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)


def setup() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"sora-hf needs Python >= 3.10; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((TORCH + (ROOT / "pyproject.toml").read_text()).encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    sh(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(PYTHON, "-m", "pip", "install", "--quiet", TORCH)
    sh(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def main() -> int:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    setup()
    return commands[sys.argv[1]](sys.argv[2:])


def offline_env() -> dict:
    # Nothing may download weights or data at run time.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def demo(args: list[str]) -> int:
    out = ROOT / "outputs" / "preview"
    cmd = [VENV / "bin" / "sora-hf", "shapeworld", "--out", out, "--num", "4", "--size", "16:9", *args]
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=offline_env()).returncode


def test(args: list[str]) -> int:
    return subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=offline_env()).returncode


if __name__ == "__main__":
    sys.exit(main())
