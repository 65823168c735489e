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
    from tests.simserver import SimServer

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
    with pytest.raises(BackendError, match=r"exited \(exit code 1\) while starting"):
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


DIES_ON_COMPLETION = '''
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "stub"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        os.kill(os.getpid(), signal.SIGILL)  # as an AMX build of llama.cpp did
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''


def _stub_command(script: str):
    def command(self: EmbeddedServer) -> list[str]:
        return [sys.executable, "-c", script, str(self.port)]
    return command


def test_a_server_that_dies_mid_run_is_named_with_its_signal_and_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers /v1/models, then dies with SIGILL on the first completion: the
    error says it died, of what, and where its log is, not 'cannot reach'."""
    from longdoc.pipeline.api import Pipeline

    monkeypatch.setattr(EmbeddedServer, "command", _stub_command(DIES_ON_COMPLETION))
    doc = tmp_path / "doc.txt"
    doc.write_text("The code of the west wing is 4417.")
    with Pipeline(backend="embedded", cache_dir=tmp_path / "cache", max_retries=0,
                  use_cache=False) as pipeline:
        with pytest.raises(BackendError) as caught:
            pipeline.ask(doc, "What is the code?", strategy="direct")
        message = str(caught.value)
        assert "embedded model server died (SIGILL, illegal instruction)" in message
        assert str(pipeline.backend.server.log_path) in message
        # The next request says the same at once, without trying the dead endpoint.
        with pytest.raises(BackendError, match="died \\(SIGILL"):
            pipeline.ask(doc, "What is the code?", strategy="direct")


def test_the_cli_names_a_dead_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from longdoc.pipeline import cli

    monkeypatch.setattr(EmbeddedServer, "command", _stub_command(DIES_ON_COMPLETION))
    monkeypatch.setenv("LONGDOC_MAX_RETRIES", "0")
    doc = tmp_path / "doc.txt"
    doc.write_text("The code of the west wing is 4417.")
    monkeypatch.setattr(sys, "argv", ["longdoc", "ask", str(doc), "-q", "What is the code?",
                                      "--strategy", "direct", "--backend", "embedded"])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 3
    stderr = capsys.readouterr().err
    assert "died (SIGILL, illegal instruction)" in stderr and "see " in stderr
    assert "Traceback" not in stderr


def test_a_server_started_from_a_short_lived_thread_outlives_it(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG is bound to the forking thread: the app starts servers from
    Streamlit's script threads, which end after every run."""
    import threading

    server = _Stub(Settings(cache_dir=tmp_path))
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        time.sleep(0.5)
        assert server.process is not None and server.process.poll() is None
        assert httpx.get(f"{server.base_url}/models", timeout=5).status_code == 200
    finally:
        server.stop()


class _Stub(EmbeddedServer):
    name = "stub"

    def command(self) -> list[str]:
        return [sys.executable, "-c", STUBBORN_SERVER, str(self.port)]


def test_stop_kills_what_an_exited_server_left_in_its_group(tmp_path: Path) -> None:
    """vLLM's API process can exit and leave its engine processes running."""
    leader = '''
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
time.sleep(3)  # serve /v1/models through the child, then exit without it
'''
    class Leaves(EmbeddedServer):
        name = "leaves"

        def command(self) -> list[str]:
            return [sys.executable, "-c", leader, STUBBORN_SERVER, str(self.port)]

    server = Leaves(Settings(cache_dir=tmp_path))
    server.start()
    server.process.wait(timeout=30)
    group = server.process.pid
    os.killpg(group, 0)  # the child is still there
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(group, signal.SIGKILL)
        pytest.fail("stop() left the exited server's children running")


def test_a_port_taken_by_another_process_is_not_taken_for_the_server(tmp_path: Path) -> None:
    """Another process that answers /v1/models on the chosen port is not our server."""
    import threading
    from http.server import HTTPServer

    from longdoc.pipeline import backends

    server = _Stub(Settings(cache_dir=tmp_path))
    # The chosen port is taken before the server binds it: this process answers there.
    squatter = HTTPServer((backends.HOST, server.port), _models_handler())
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        endpoint = server.start()
        assert server.port != squatter.server_address[1]
        assert endpoint.model == "stub"
        assert server.process.pid in backends.listening_pids(server.port)
    finally:
        server.stop()
        squatter.shutdown()


def _models_handler() -> type:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"data": [{"id": "foreign"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def test_describe_exit() -> None:
    from longdoc.pipeline.backends import describe_exit

    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-signal.SIGILL) == "SIGILL, illegal instruction"
    assert describe_exit(-signal.SIGKILL) == "SIGKILL, killed"
