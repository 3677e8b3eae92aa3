"""`sora-hf app` in a subprocess on a free loopback port: the tests and bench/app_latency.py drive it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

START_TIMEOUT_S = 240  # importing torch + gradio and loading the model on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python -m sora_hf.cli app ...` on a free loopback port; stop() ends it (and only it)."""

    def __init__(self, model: Path, library: Path, workdir: Path, max_queue: int = 4):
        self.model, self.library, self.workdir, self.max_queue = model, library, workdir, max_queue
        self.process: subprocess.Popen | None = None
        self.port = free_port()
        self.log_path = workdir / "app.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "AppServer":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
               "GRADIO_TEMP_DIR": str(self.workdir / "gradio-tmp"), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "sora_hf.cli", "app", "--model", str(self.model), "--library",
               str(self.library), "--host", "127.0.0.1", "--port", str(self.port), "--max-queue", str(self.max_queue)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def client(self) -> Client:
        return Client(self.url, verbose=False, download_files=str(self.workdir / "downloads"))
