"""Settings: defaults < TOML file < LONGDOC_* environment < explicit overrides.

The autouse fixture in conftest strips LONGDOC_* variables, sets LONGDOC_CACHE_DIR and
makes tmp_path the working directory, so ``./longdoc.toml`` here means tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.settings import Settings, load_settings, trust


def write_toml(path: Path, text: str, *, trusted: bool = True) -> Path:
    """Write a TOML file; ``./longdoc.toml`` is trusted too (else it is ignored)."""
    path.write_text(text)
    if trusted and path.name == "longdoc.toml":
        trust(path)
    return path


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LONGDOC_CACHE_DIR")
    settings = load_settings()
    assert settings.backend == "embedded"
    assert settings.server.base_url is None
    assert settings.documents.chunk_tokens == 2000
    assert settings.documents.chunk_overlap == 100
    assert settings.llm.concurrency == 4
    assert settings.llm.max_retries == 3
    assert settings.llm.timeout_s == 300.0
    assert settings.llm.use_cache is True
    assert settings.strategy == "auto"
    assert settings.direct.truncate is False
    assert settings.server.vllm_extra_args == []
    assert settings.cache_dir == Path.home() / ".cache" / "longdoc"


def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGDOC_CHUNK_TOKENS", "500")
    monkeypatch.setenv("LONGDOC_TRUNCATE", "true")
    monkeypatch.setenv("LONGDOC_VLLM_EXTRA_ARGS", '["--enforce-eager"]')
    settings = load_settings()
    assert settings.documents.chunk_tokens == 500
    assert settings.direct.truncate is True
    assert settings.server.vllm_extra_args == ["--enforce-eager"]
    assert settings.cache_dir == tmp_path / "cache"


def test_toml_from_longdoc_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path / "elsewhere.toml", 'chunk_tokens = 700\nbackend = "openai"\n')
    monkeypatch.setenv("LONGDOC_CONFIG", str(config))
    settings = load_settings()
    assert (settings.documents.chunk_tokens, settings.backend) == (700, "openai")


def test_toml_from_working_directory_only_once_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A longdoc.toml in whatever folder longdoc runs from is ignored (one warning line)
    until trusted; a change untrusts it; the trust record is not in the folder itself."""
    hostile = 'chunk_tokens = 800\nvllm_python = "./helper.sh"\nbase_url = "http://evil/v1"\n'
    path = write_toml(tmp_path / "longdoc.toml", hostile, trusted=False)
    settings = load_settings()
    assert (settings.documents.chunk_tokens, settings.server.vllm_python,
            settings.server.base_url) == (2000, None, None)
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "ignoring ./longdoc.toml: not trusted" in warning
    load_settings()
    assert capsys.readouterr().err == ""  # one warning per file and process

    trust(path)
    assert load_settings().documents.chunk_tokens == 800
    assert not list(tmp_path.glob("*.json"))  # recorded under the cache folder
    path.write_text(hostile.replace("800", "801"))
    assert load_settings().documents.chunk_tokens == 2000  # changed since: untrusted again


def test_longdoc_config_wins_over_working_directory_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(tmp_path / "longdoc.toml", "chunk_tokens = 800\n")
    monkeypatch.setenv("LONGDOC_CONFIG", str(write_toml(tmp_path / "other.toml",
                                                         "chunk_tokens = 900\n")))
    assert load_settings().documents.chunk_tokens == 900


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "longdoc.toml",
               "chunk_tokens = 300\nchunk_overlap = 10\nmax_pages = 7\n")
    monkeypatch.setenv("LONGDOC_CHUNK_TOKENS", "500")
    monkeypatch.setenv("LONGDOC_CHUNK_OVERLAP", "20")
    settings = load_settings(chunk_tokens=900)
    assert settings.documents.chunk_tokens == 900  # override > env > TOML
    assert settings.documents.chunk_overlap == 20  # env > TOML
    assert settings.budget.max_pages == 7  # TOML > default
    assert settings.llm.concurrency == 4  # default


def test_none_overrides_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "longdoc.toml", 'backend = "vllm"\n')
    monkeypatch.setenv("LONGDOC_TRUNCATE", "true")
    settings = load_settings(backend=None, truncate=None, strategy=None)
    assert settings.backend == "vllm"
    assert settings.direct.truncate is True
    assert settings.strategy == "auto"


def test_unknown_toml_key_rejected(tmp_path: Path) -> None:
    write_toml(tmp_path / "longdoc.toml", "chunk_tokenz = 500\n")
    with pytest.raises(InputError, match="chunk_tokenz") as info:
        load_settings()
    assert info.value.exit_code == 2


def test_missing_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGDOC_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(InputError, match=r"config file not found: .*absent\.toml"):
        load_settings()


def test_toml_syntax_error(tmp_path: Path) -> None:
    write_toml(tmp_path / "longdoc.toml", "chunk_tokens = [\n")
    with pytest.raises(InputError, match=r"longdoc\.toml is not valid TOML"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"LONGDOC_CHUNK_TOKENS": "10"}, "chunk_tokens"),  # below ge=50
        ({"LONGDOC_CONCURRENCY": "0"}, "concurrency"),
        ({"LONGDOC_TIMEOUT_S": "soon"}, "timeout_s"),
        ({"LONGDOC_BACKEND": "gpt"}, "backend"),
        ({"LONGDOC_VLLM_EXTRA_ARGS": "--not-json"}, "vllm_extra_args"),
    ],
)
def test_invalid_env_value_names_the_field(
    env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InputError, match=field):
        load_settings()


def test_invalid_toml_value_names_the_field(tmp_path: Path) -> None:
    write_toml(tmp_path / "longdoc.toml", 'max_retries = "many"\n')
    with pytest.raises(InputError, match="invalid setting max_retries"):
        load_settings()


def test_invalid_override_names_the_field() -> None:
    with pytest.raises(InputError, match="invalid setting chunk_overlap"):
        load_settings(chunk_overlap=-1)


def test_settings_class_is_usable_directly(tmp_path: Path) -> None:
    settings = Settings(backend="openai", base_url="http://x/v1", cache_dir=tmp_path)
    assert settings.server.base_url == "http://x/v1"
    assert settings.cache_dir == tmp_path


def test_tree_answers_to_flat_and_nested_names(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each branch field is set by its flat name (LONGDOC_CHUNK_TOKENS, a top-level TOML
    key, a keyword) or its nested one (LONGDOC_DOCUMENTS__CHUNK_TOKENS, a TOML table);
    the flat environment name beats the file, as before."""
    write_toml(tmp_path / "longdoc.toml", "[reader]\ncu_tokens = 300\n[auto]\ngrowth = 4\n"
               "[mapreduce]\nmax_conflict_options = 3\n")
    monkeypatch.setenv("LONGDOC_READER__CU_TOKENS", "350")
    monkeypatch.setenv("LONGDOC_RETRIEVE_K", "7")
    monkeypatch.setenv("LONGDOC_MAX_CONFLICT_OPTIONS", "5")
    settings = load_settings(second_look_passages=2)
    assert settings.reader.cu_tokens == 350  # env > TOML
    assert settings.auto.growth == 4  # TOML table
    assert settings.retrieval.k == 7  # flat alias of retrieval.k
    assert settings.mapreduce.max_conflict_options == 5
    assert settings.mapreduce.second_look_passages == 2
    changed = settings.with_values(truncate=True, retrieve_k=3)
    assert (changed.direct.truncate, changed.retrieval.k, settings.direct.truncate) == \
        (True, 3, False)
    with pytest.raises(InputError, match="invalid setting retrieve_k"):
        load_settings(retrieve_k=0)


def test_every_setting_is_described_and_answer_settings_keep_their_keys() -> None:
    rows = Settings().describe()
    assert all(description for *_, description in rows), [r for r in rows if not r[3]]
    paths = {path for path, *_ in rows}
    assert {"mapreduce.second_look_passages", "mapreduce.max_conflict_options",
            "mapreduce.max_collapse_rounds", "retrieval.default_k", "auto.growth"} <= paths
    # The batch/--run-id key of an answer: the same flat names and values as before the
    # tree; tunables added since count only when changed.
    assert sorted(Settings().answer_values()) == sorted((
        "temperature", "seed", "max_answer_tokens", "chunk_tokens", "chunk_overlap",
        "truncate", "cu_tokens", "memory_tokens", "segment_tokens", "step_reply_tokens",
        "retrieve_k", "retrieve_neighbours", "retrieval_mode", "embedder",
        "embed_window_tokens", "retrieval_fusion", "max_chunks", "max_calls", "time_budget_s",
        "full_read_chunks"))
    assert Settings(growth=4).answer_values()["growth"] == 4
