#!/usr/bin/env python3
"""Set up sora-hf in a local virtual environment and run it — the README's two commands.

    python3 dev.py demo   # set up (once), then run the demo on the shipped model
    python3 dev.py test   # set up (once), then run the test suite

Set-up creates `.venv/`, installs torch==2.13.0 *first* (the CPU wheel; any
other torch request would pull gigabytes of CUDA), then the package with its
`dev` extra, resolved against that torch. It re-runs only when pyproject.toml
changes. It also installs Debian's chromium (as root, with apt-get) for the
browser tests, which Playwright drives: Playwright never downloads a browser
here. Extra arguments after the command go to the tool (pytest, sora-hf app).

The demo is the studio (a Gradio app) on pipelines/sora-tiny at
http://127.0.0.1:7860, with its library in outputs/library/; until that model
is trained it renders a ShapeWorld preview into outputs/preview/ instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
TORCH = "torch==2.13.0"
STAMP = VENV / ".sora-hf-setup"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; the browser tests drive it with Playwright
MODEL = ROOT / "pipelines" / "sora-tiny"


def sh(*cmd, **kwargs) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)


def setup() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"sora-hf needs Python >= 3.10; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    install_chromium()
    wanted = hashlib.sha256((TORCH + (ROOT / "pyproject.toml").read_text()).encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    sh(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(PYTHON, "-m", "pip", "install", "--quiet", TORCH)
    sh(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def install_chromium() -> None:
    """Debian's chromium (and a font) for tests/test_browser.py, once. Needs root and apt-get;
    elsewhere it says so, and the browser tests skip (outside CI) with the same advice."""
    if CHROMIUM.exists() or not shutil.which("apt-get"):
        return
    if os.geteuid() != 0:
        print(f"note: the browser tests need {CHROMIUM}: sudo apt-get install chromium", flush=True)
        return
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        sh("apt-get", "update", "-qq", env=apt_env)
        sh("apt-get", "install", "-y", "-qq", "chromium", "fonts-dejavu-core", env=apt_env)
    except subprocess.CalledProcessError as error:  # the other tests can still run
        print(f"note: installing chromium failed ({error}); the browser tests will say so", flush=True)


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
    """The studio on the shipped model, offline; a ShapeWorld preview while it is not trained yet."""
    if (MODEL / "transformer").is_dir():
        cmd = [VENV / "bin" / "sora-hf", "app", "--model", MODEL, "--library", ROOT / "outputs" / "library",
               "--host", "127.0.0.1", "--port", "7860", *args]
        env = {**offline_env(), "GRADIO_ANALYTICS_ENABLED": "False"}
        print("the studio opens at http://127.0.0.1:7860 (Ctrl+C stops it)", flush=True)
    else:
        print(f"{MODEL.relative_to(ROOT)} is not trained yet: rendering a ShapeWorld preview instead", flush=True)
        out = ROOT / "outputs" / "preview"
        cmd = [VENV / "bin" / "sora-hf", "shapeworld", "--out", out, "--num", "4", "--size", "16:9", *args]
        env = offline_env()
    try:
        return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        return 0


def test(args: list[str]) -> int:
    return subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=offline_env()).returncode


if __name__ == "__main__":
    sys.exit(main())
