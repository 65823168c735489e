from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from longdoc.pipeline.backends import Backend, EmbeddedServer, default_gguf, vllm_command, vllm_env
from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.vllm_model import VLLMRuntime


def test_vllm_command_on_gpu_and_cpu() -> None:
    settings = Settings(vllm_model="Qwen/Qwen2.5-7B-Instruct", vllm_max_model_len=32768,
                        vllm_gpu_memory_utilization=0.85, vllm_tensor_parallel_size=2,
                        vllm_extra_args=["--max-num-seqs", "64"])
    gpu = VLLMRuntime(python="/env/bin/python", version="0.33.0")
    command = vllm_command(settings, 8123, gpu, "Qwen/Qwen2.5-7B-Instruct")
    assert command[:5] == ["/env/bin/python", "-m", "vllm.entrypoints.openai.api_server",
                           "--model", "Qwen/Qwen2.5-7B-Instruct"]
    joined = " ".join(command)
    for part in ("--host 127.0.0.1", "--port 8123", "--max-model-len 32768",
                 "--gpu-memory-utilization 0.85", "--tensor-parallel-size 2",
                 "--enable-prefix-caching", "--enable-prompt-tokens-details",
                 "--max-num-seqs 64"):
        assert part in joined
    assert "--enforce-eager" not in joined
    cpu = VLLMRuntime(python="/env/bin/python", version="0.32.0", cpu=True)
    joined = " ".join(vllm_command(settings, 8123, cpu, "/models/smol"))
    assert "--dtype bfloat16 --enforce-eager --block-size 32" in joined
    assert "--served-model-name" in joined
    assert "--gpu-memory-utilization" not in joined
    env = vllm_env(Settings(vllm_cpu_kvcache_gib=3), cpu)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["HF_HUB_OFFLINE"] == "1"
    gpu_env = vllm_env(Settings(), gpu)  # the KV cache size is the CPU build's setting
    assert gpu_env.get("VLLM_CPU_KVCACHE_SPACE") == os.environ.get("VLLM_CPU_KVCACHE_SPACE")


def test_openai_backend_reads_the_window_or_asks_for_it(sim, tmp_path: Path) -> None:
    server = sim(lambda m: "x", context_window=4096)
    endpoint = Backend(Settings(backend="openai", base_url=server.base_url,
                                cache_dir=tmp_path)).start()
    assert (endpoint.model, endpoint.context_window) == ("sim-model", 4096)
    overridden = Backend(Settings(backend="openai", base_url=server.base_url,
                                  context_window=2048, cache_dir=tmp_path)).start()
    assert overridden.context_window == 2048
    with pytest.raises(BackendError, match="LONGDOC_BASE_URL"):
        Backend(Settings(backend="openai", cache_dir=tmp_path)).start()


def test_openai_backend_with_unknown_window(tmp_path: Path) -> None:
    from longdoc.pipeline.simserver import SimServer

    class NoWindow(SimServer):
        pass

    server = NoWindow(lambda m: "x").start()
    server.context_window = 0
    try:
        with pytest.raises(BackendError, match="LONGDOC_CONTEXT_WINDOW"):
            Backend(Settings(backend="openai", base_url=server.base_url,
                             cache_dir=tmp_path)).start()
    finally:
        server.stop()


def test_embedded_model_file_is_found() -> None:
    path = default_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6


def test_embedded_missing_model_file(tmp_path: Path) -> None:
    settings = Settings(model_path=tmp_path / "nope.gguf", cache_dir=tmp_path)
    with pytest.raises(BackendError, match="model file not found"):
        Backend(settings).start()


def test_embedded_command_disables_logits_all(tmp_path: Path) -> None:
    command = EmbeddedServer(Settings(cache_dir=tmp_path, n_threads=2)).command()
    joined = " ".join(command)
    assert "--logits_all false" in joined and "--host 127.0.0.1" in joined
    assert "--n_ctx 8192" in joined and "--n_threads 2" in joined


def test_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    settings = Settings(model_path=bad, cache_dir=tmp_path, server_start_timeout_s=60)
    with pytest.raises(BackendError, match="exited with code"):
        Backend(settings).start()


@pytest.mark.real_model
def test_embedded_server_starts_and_stops(tmp_path: Path) -> None:
    backend = Backend(Settings(cache_dir=tmp_path))
    endpoint = backend.start()
    assert endpoint.context_window == 8192
    assert httpx.get(f"{endpoint.base_url}/models").status_code == 200
    process = backend.server.process
    backend.stop()
    assert process.poll() is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{endpoint.base_url}/models", timeout=2)


@pytest.mark.real_model
def test_serve_stops_its_server_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "LONGDOC_CACHE_DIR": str(tmp_path)}
    # Started with SIGINT ignored, as a background job of a non-interactive shell is (CI).
    proc = subprocess.Popen([sys.executable, "-m", "longdoc", "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving"), line + proc.stderr.read()
        base_url = line.split(" at ")[1].split()[0]
        assert httpx.get(f"{base_url}/models").status_code == 200
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # stop() allows the server 10 s for SIGTERM, 10 s after SIGKILL
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base_url}/models", timeout=1)
            except httpx.HTTPError:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the model server outlived `longdoc serve`")
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()


STUBBORN_SERVER = '''
import json, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like a server finishing a long request
class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "stub"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Models).serve_forever()
'''

PARENT = '''
import sys, time
from pathlib import Path
from longdoc.pipeline.backends import ManagedServer
from longdoc.pipeline.settings import Settings

class Stub(ManagedServer):
    name = "stub"
    def command(self):
        return [sys.executable, "-c", sys.argv[1], str(self.port)]
    def context_window(self, models):
        return 1024

server = Stub(Settings(cache_dir=Path(sys.argv[2])))
server.start()
print(server.process.pid, flush=True)
time.sleep(600)
'''


def test_server_dies_with_a_killed_longdoc_even_if_it_ignores_sigterm(tmp_path: Path) -> None:
    """longdoc killed without cleaning up (SIGTERM, no handler): the kernel kills its
    server at once, whatever the server does with SIGTERM."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, STUBBORN_SERVER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(child, signal.SIGKILL)
            pytest.fail("the server outlived the longdoc process that started it")
    finally:
        parent.kill()
