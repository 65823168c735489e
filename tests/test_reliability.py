"""Issue 17: nothing trusted that a user did not ask for, nothing lost or mixed up when
things fail (run ids, the review app, the CLI, file modes). Against the simulated server."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.cli import app
from longdoc.pipeline.errors import BackendError, InputError
from tests.conftest import SAMPLES, sim_env, sim_settings
from tests.simserver import Fault, ProtocolModel

FILLER = "The harbour board met again and discussed the ferry timetable at length. "
QUESTION = "What is the secret passkey?"
KENNEDY = SAMPLES / "kennedy-1962-state-of-the-union.pdf"


def document(folder: Path, passkey: str = "48213") -> Path:
    path = folder / "log.txt"
    parts = [FILLER * 12 for _ in range(6)]
    parts[4] = FILLER * 6 + f"The secret passkey is {passkey}. " + FILLER * 6
    path.write_text("\n\n".join(parts))
    return path


class FailOnce:
    """ProtocolModel replies, but call ``fail_at`` fails (HTTP 500)."""

    def __init__(self, fail_at: int | None = None):
        self.model, self.fail_at, self.calls = ProtocolModel(), fail_at, 0

    def __call__(self, messages) -> str | Fault:
        self.calls += 1
        return Fault(status=500) if self.calls == self.fail_at else self.model(messages)


def run_settings(server, tmp_path: Path, **overrides):
    values = {"use_cache": False, "chunk_tokens": 200, "chunk_overlap": 0, "concurrency": 1}
    return sim_settings(server, tmp_path, **{**values, **overrides})


# --- --run-id ---------------------------------------------------------------------------------


def test_a_run_id_is_refused_for_changed_documents_or_settings(sim, tmp_path: Path) -> None:
    """The issue's case: after the file changed, the same run id returned the old answer,
    whose citation no longer matched the text."""
    server = sim(ProtocolModel())
    doc = document(tmp_path)
    with Pipeline(run_settings(server, tmp_path)) as pipeline:
        first = pipeline.ask(doc, QUESTION, strategy="mapreduce", run_id="r")
        assert "48213" in first.answer
        document(tmp_path, passkey="77031")  # the same path, other contents
        with pytest.raises(InputError, match="was started on other document contents or "
                                             "settings"):
            pipeline.ask(doc, QUESTION, strategy="mapreduce", run_id="r")
        assert "77031" in pipeline.ask(doc, QUESTION, strategy="mapreduce",
                                       run_id="r-new").answer
    with Pipeline(run_settings(server, tmp_path, chunk_tokens=300)) as pipeline, \
            pytest.raises(InputError, match="other document contents or settings"):
        pipeline.ask(doc, QUESTION, strategy="mapreduce", run_id="r-new")


def test_resume_loads_registered_state_types_without_warnings(
    sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = sim(FailOnce(fail_at=3))
    doc = document(tmp_path)
    with Pipeline(run_settings(server, tmp_path, max_failed_share=0)) as pipeline:
        with pytest.raises(BackendError):
            pipeline.ask(doc, QUESTION, strategy="mapreduce", run_id="resumed")
        with caplog.at_level(logging.DEBUG):
            resumed = pipeline.ask(doc, QUESTION, strategy="mapreduce", run_id="resumed")
    assert "48213" in resumed.answer
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "unregistered" in w.lower() or "allowlist" in w], warnings


# --- the review app -------------------------------------------------------------------------


streamlit_testing = pytest.importorskip("streamlit.testing.v1")


@pytest.fixture
def app_test(sim, monkeypatch: pytest.MonkeyPatch):
    """``app_test(**env)``: the app script on a simulated server, started."""
    import streamlit as st

    from longdoc.app.launch import APP_SCRIPT

    server = sim(ProtocolModel())

    def start(**env: str):
        values = {"LONGDOC_BACKEND": "openai", "LONGDOC_BASE_URL": server.base_url,
                  "LONGDOC_MAX_RETRIES": "0", "LONGDOC_EMBEDDER": "hash", **env}
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        at = streamlit_testing.AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
        at.run()
        assert not at.exception
        return at

    yield start
    st.cache_resource.clear()


def test_the_page_cannot_choose_the_endpoint_or_a_verdicts_path(app_test, tmp_path: Path) -> None:
    at = app_test()
    keys = {w.key for w in at.text_input}
    assert not keys & {"base_url", "model", "api_key", "verdicts_path"}
    for name in ("/etc/passwd", "../verdicts.jsonl", "sub/v.jsonl", "responses.sqlite"):
        at.text_input(key="verdicts_name").input(name).run()
        assert any("not a path" in e.value for e in at.sidebar.error), name
    at.text_input(key="verdicts_name").input("team-a.jsonl").run()
    assert not at.sidebar.error


def test_verdicts_path_is_a_name_in_the_cache_folder(tmp_path: Path) -> None:
    from longdoc.app.verdicts import verdicts_path

    assert verdicts_path(tmp_path, " team-a.jsonl ") == tmp_path / "team-a.jsonl"
    for bad in ("/etc/passwd", "../x.jsonl", "a/b.jsonl", ".hidden.jsonl", "x.txt", ""):
        with pytest.raises(InputError, match="not a path"):
            verdicts_path(tmp_path, bad)


def test_the_app_asks_for_its_token(app_test) -> None:
    at = app_test(LONGDOC_APP_TOKEN="s3cret-token")
    assert [w.key for w in at.text_input] == ["token"]
    assert not at.get("multiselect")  # nothing else is shown
    at.text_input(key="token").input("guess").run()
    assert [e.value for e in at.error] == ["Wrong token."] and not at.get("multiselect")
    at.text_input(key="token").input("s3cret-token").run()
    assert not at.exception and at.multiselect(key="documents").value  # the app itself
    at.run()
    assert at.multiselect(key="documents").value  # the session stays authorized


def test_the_app_reads_each_file_once_for_all_strategies(
    app_test, monkeypatch: pytest.MonkeyPatch
) -> None:
    from longdoc.pipeline import api

    reads: list[str] = []
    real = api.load_document

    def counted(path, **kwargs):
        reads.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(api, "load_document", counted)
    api._loaded.clear()
    at = app_test()
    at.text_area(key="question").input("How far did the number of major surplus labor "
                                       "areas decline?")
    at.multiselect(key="strategies_qa").set_value(["direct", "rag", "mapreduce"])
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    assert reads == [str(KENNEDY)]


def test_longdoc_app_beyond_localhost_needs_a_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["app", "--address", "0.0.0.0", "--no-browser"])
    assert result.exit_code == 2
    assert "--address 0.0.0.0 lets other machines reach the app: give --token" in result.output


# --- the CLI ----------------------------------------------------------------------------------


def test_config_masks_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGDOC_API_KEY", "sk-live-very-secret")
    monkeypatch.setenv("LONGDOC_EMBED_API_KEY", "emb-very-secret")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0
    assert "very-secret" not in result.output and '"api_key": "**********"' in result.output


def test_config_trust_makes_the_local_file_count(tmp_path: Path) -> None:
    (tmp_path / "longdoc.toml").write_text("chunk_tokens = 777\n")
    before = CliRunner().invoke(app, ["config"])
    assert '"chunk_tokens": 2000' in before.output
    trusted = CliRunner().invoke(app, ["config", "--trust"])
    assert trusted.exit_code == 0 and '"chunk_tokens": 777' in trusted.output
    named = CliRunner().invoke(app, ["--config", str(tmp_path / "longdoc.toml"), "config"])
    assert '"chunk_tokens": 777' in named.output
    missing = CliRunner().invoke(app, ["--config", str(tmp_path / "absent.toml"), "config"])
    assert missing.exit_code == 2 and "absent.toml: file not found" in missing.output


def test_an_untrusted_config_never_runs_its_program(tmp_path: Path) -> None:
    """The issue's case: ``vllm_python=./helper.sh`` in a local longdoc.toml ran that script."""
    marker = tmp_path / "ran"
    helper = tmp_path / "helper.sh"
    helper.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    helper.chmod(0o755)
    (tmp_path / "longdoc.toml").write_text('backend = "vllm"\nvllm_python = "./helper.sh"\n')
    (tmp_path / "notes.txt").write_text("The code is 4417.")
    env = {k: v for k, v in os.environ.items() if k != "LONGDOC_BACKEND"}
    proc = subprocess.run([sys.executable, "-m", "longdoc", "config"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=60)
    assert '"vllm_python": null' in proc.stdout and '"backend": "embedded"' in proc.stdout
    assert proc.stderr.count("\n") == 1 and "not trusted" in proc.stderr
    assert not marker.exists()


def test_pdf_password_from_stdin_or_environment(tmp_path: Path) -> None:
    from tests.test_ingest import make_pdf

    pdf = tmp_path / "locked.pdf"
    pdf.write_bytes(make_pdf(["The vault code is 90210."], password="hunter2"))
    command = [sys.executable, "-m", "longdoc", "extract", str(pdf)]
    base = {k: v for k, v in os.environ.items() if k != "LONGDOC_PDF_PASSWORD"}
    refused = subprocess.run(command, capture_output=True, text=True, env=base, timeout=60)
    assert refused.returncode == 2 and "encrypted; pass --password" in refused.stderr
    piped = subprocess.run([*command, "--password-stdin"], input="hunter2\n",
                           capture_output=True, text=True, env=base, timeout=60)
    assert piped.returncode == 0 and "90210" in piped.stdout
    from_env = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env={**base, "LONGDOC_PDF_PASSWORD": "hunter2"})
    assert from_env.returncode == 0 and "90210" in from_env.stdout


@pytest.mark.parametrize(("name", "data"), [
    ("blob.txt", bytes(range(256)) * 8),
    ("wide.txt", "Plain text, but UTF-16 without a BOM.".encode("utf-16-le")),
])
def test_cli_refuses_binary_and_reads_utf16(sim, tmp_path: Path, name: str, data: bytes) -> None:
    server = sim(ProtocolModel())
    path = tmp_path / name
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "longdoc", "ask", str(path), "-q", "What?",
                           "--strategy", "direct"], capture_output=True, text=True,
                          env=sim_env(server), timeout=120)
    if name == "blob.txt":
        assert proc.returncode == 2
        assert proc.stderr.strip() == "error: blob.txt: binary file (NUL bytes), not text"
        assert not server.requests
    else:
        assert proc.returncode == 0, proc.stderr
        assert "UTF-16 without a BOM" in server.requests[0]["messages"][-1]["content"]


# --- file modes -------------------------------------------------------------------------------


def test_caches_uploads_and_verdicts_are_private(sim, tmp_path: Path) -> None:
    from longdoc.app.runs import save_upload
    from longdoc.app.verdicts import Verdict, VerdictStore
    from tests.test_app import DOCS, sample_answer

    server = sim(ProtocolModel())
    cache = tmp_path / "fresh-cache"
    settings = sim_settings(server, tmp_path, cache_dir=cache)
    with Pipeline(settings) as pipeline:
        pipeline.ask(document(tmp_path), QUESTION, strategy="direct", run_id="modes")
    upload = save_upload("notes.txt", b"private", cache / "uploads")
    store = VerdictStore(cache / "verdicts.jsonl")
    store.append(Verdict.of(sample_answer(), task="qa", question="q", documents=DOCS,
                            verdict="correct"))

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(cache) == 0o700 and mode(upload.parent) == 0o700
    for path in (cache / "responses.sqlite", cache / "runs.sqlite", upload, store.path):
        assert mode(path) == 0o600, path


# --- map-reduce without the chunks whose call failed -------------------------------------


class FailingChunk:
    """ProtocolModel replies, except for map calls on the chunk holding ``marker``: HTTP
    500 (``times`` times, then healed) or garbage."""

    def __init__(self, marker: str, times: int = 10**6, fault: Fault | str | None = None):
        self.model, self.marker, self.times = ProtocolModel(), marker, times
        self.fault = Fault(status=500) if fault is None else fault
        self.failed = 0

    def __call__(self, messages) -> str | Fault:
        if self.marker in messages[-1]["content"] and self.failed < self.times:
            self.failed += 1
            return self.fault
        return self.model(messages)


def many_chunks(folder: Path) -> Path:
    """A document of ~10 chunks of 200 tokens; the passkey in the 5th, 'ferry' in the 8th."""
    parts = [f"Part {i}. " + FILLER * 10 for i in range(10)]
    parts[4] += "The secret passkey is 48213. "
    parts[7] = parts[7].replace("Part 7.", "Part 7. Ferry")
    path = folder / "long.txt"
    path.write_text("\n\n".join(parts))
    return path


@pytest.mark.parametrize("fault", [Fault(status=500), "", Fault(body="not json")])
def test_a_failed_map_call_costs_its_chunk_not_the_run(sim, tmp_path: Path, fault) -> None:
    """The issue's case: a 500 or a garbage body on 1 of 14 chunks gave exit 3 and
    discarded the other 13. Now: the answer, and the failed chunk in its coverage."""
    server = sim(FailingChunk("Part 7. Ferry", fault=fault))
    settings = sim_settings(server, tmp_path, use_cache=False, chunk_tokens=200,
                            chunk_overlap=0, max_retries=1)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(many_chunks(tmp_path), QUESTION, strategy="mapreduce")
    assert "48213" in answer.answer and answer.citations
    assert answer.coverage is not None and answer.coverage.chunks_failed == 1
    assert answer.coverage.chunks_read == answer.coverage.chunks_total - 1
    assert server.responder.failed == 2  # the call and its one retry
    (reduce,) = [e for e in answer.trace if e.node == "mapreduce.reduce"]
    assert reduce.data["chunks_failed"] == 1 and reduce.data["pages_failed"] == []
    assert "coverage" in answer.model_dump_json()


def test_too_many_failed_chunks_fail_the_run_after_one_more_try(sim, tmp_path: Path) -> None:
    model, down = ProtocolModel(), [True]
    server = sim(lambda messages: Fault(status=503) if down[0] else model(messages))
    settings = sim_settings(server, tmp_path, use_cache=False, chunk_tokens=200,
                            chunk_overlap=0, max_failed_share=0.2)
    doc = many_chunks(tmp_path)
    with Pipeline(settings) as pipeline:
        with pytest.raises(BackendError, match=r"(\d+) of \1 chunk\(s\) failed, over "
                                               r"max_failed_share 0.2: model server answered "
                                               r"HTTP 503") as caught:
            pipeline.ask(doc, QUESTION, strategy="mapreduce")
        chunks = int(str(caught.value).split(" of ")[0])
        asked = Counter(r["messages"][-1]["content"] for r in server.requests)
        assert list(asked.values()).count(2) == chunks  # each chunk, then each once more
        down[0] = False
        assert "48213" in pipeline.ask(doc, QUESTION, strategy="mapreduce").answer


def test_pages_of_failed_chunks_are_reported(sim, tmp_path: Path) -> None:
    from tests.test_ingest import make_pdf

    pages = [f"Page {n} of the harbour report. " + FILLER * 3 for n in range(1, 7)]
    pages[2] = "Page 3 holds the ferry log. " + FILLER * 3
    pages[4] += "The secret passkey is 48213."
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf(["\n".join(p[i:i + 80] for i in range(0, len(p), 80))
                              for p in pages]))
    server = sim(FailingChunk("ferry log"))
    settings = sim_settings(server, tmp_path, use_cache=False, chunk_tokens=120,
                            chunk_overlap=0, max_failed_share=0.5)
    with Pipeline(settings) as pipeline:
        answer = pipeline.ask(pdf, QUESTION, strategy="mapreduce")
    assert "48213" in answer.answer
    assert answer.coverage.chunks_failed >= 1 and 3 in answer.coverage.pages_failed


def test_an_existing_cache_folder_keeps_its_mode(tmp_path: Path) -> None:
    """LONGDOC_CACHE_DIR may name a shared folder (/tmp): only folders longdoc creates are
    made private."""
    from longdoc.pipeline.settings import private_dir

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    private_dir(shared / "a" / "b")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "a" / "b").stat().st_mode) == 0o700


def test_api_keys_never_show_in_settings_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    from longdoc.pipeline.settings import load_settings

    monkeypatch.setenv("LONGDOC_API_KEY", "sk-live-very-secret")
    settings = load_settings()
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings)
    assert settings.server.api_key.get_secret_value() == "sk-live-very-secret"


def test_an_unreachable_server_stops_the_map_stage_at_once(sim, tmp_path: Path) -> None:
    """A chunk is left out for its own failures, not for an outage: when the server cannot be
    reached after the retries the run stops instead of trying every other chunk."""
    model = ProtocolModel()
    server = sim(lambda messages: Fault(reset=True) if "Part" in messages[-1]["content"]
                 else model(messages))
    settings = sim_settings(server, tmp_path, use_cache=False, chunk_tokens=200,
                            chunk_overlap=0, concurrency=1)
    with Pipeline(settings) as pipeline, pytest.raises(BackendError, match="cannot reach"):
        pipeline.ask(many_chunks(tmp_path), QUESTION, strategy="mapreduce")
    assert len(server.requests) <= 2  # the first chunk (and one queued behind it)
