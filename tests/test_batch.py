"""Batch jobs: inputs, one result line per document, resuming, concurrency, CLI, Ray."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longdoc.pipeline.batch import BatchResult, collect_inputs, run_batch
from longdoc.pipeline.cli import app
from longdoc.pipeline.errors import BackendError, InputError
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.runs import JsonLog
from tests.conftest import real_settings, sim_env, sim_settings
from tests.simserver import Fault, LatencyModel, Messages, ProtocolModel, SimServer

TOPICS = ["harbour", "bridge", "library", "orchard", "railway", "theatre"]


def text_of(topic: str) -> str:
    """A short document whose sentences all name ``topic``."""
    return (f"The town {topic} was rebuilt in the spring after a long public debate. "
            f"Everyone in the {topic} quarter helped with the work for many weeks.\n\n"
            f"The council praised the new {topic} and its builders at a festival. "
            f"Visitors came from far away to see the {topic} for themselves.")


def write_docs(folder: Path, topics: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic in topics:
        path = folder / f"{topic}.txt"
        path.write_text(text_of(topic))
        paths.append(path)
    return paths


def read_lines(path: Path) -> list[BatchResult]:
    return JsonLog(path, BatchResult).read()


def prompted_topics(server: SimServer) -> list[str]:
    """The topics of the documents the server was asked about, in request order."""
    found = []
    for request in server.requests:
        name = re.search(r'<document name="([^"]+)\.txt"', request["messages"][1]["content"])
        found.append(name.group(1) if name else "?")
    return found


def assert_exact_citations(result: BatchResult, text: str) -> None:
    """Every citation names the result's source and its offsets index ``text``."""
    for citation in result.citations:
        assert citation.source == result.source
        assert text[citation.start:citation.end] == citation.quote


class Failing:
    """ProtocolModel replies for the first ``healthy`` calls, then HTTP 500 until healed."""

    def __init__(self, healthy: int):
        self.model, self.healthy, self.calls = ProtocolModel(), healthy, 0
        self.lock = threading.Lock()

    def __call__(self, messages: Messages) -> str | Fault:
        with self.lock:
            self.calls += 1
            broken = self.calls > self.healthy
        return Fault(status=500) if broken else self.model(messages)


# --- inputs and results ---------------------------------------------------------------------


def test_folder_with_bad_pdfs_and_jsonl(sim, tmp_path: Path, test_data: Path) -> None:
    """Good text and PDF files, an encrypted and an image-only PDF, an empty file and a
    JSONL of two reports (one with an id, one without) and a blank document: every
    document gets one line; the bad ones fail with their reason, the rest are cited."""
    folder = tmp_path / "docs"
    write_docs(folder / "nested", ["harbour"])
    pdfs = test_data / "pdfs"
    for name in ("normal__pdflatex-4-pages.pdf", "enc-pw__libreoffice-writer-password.pdf",
                 "imageonly__grayscale-image.pdf"):
        (folder / name).write_bytes((pdfs / name).read_bytes())
    (folder / "empty.txt").write_text("")
    (folder / ".hidden.txt").write_text("never read")
    reports = [p.read_text() for p in sorted((test_data / "state_union").glob("*.txt"))[:2]]
    lines = [{"id": "report-a", "input": reports[0][:6000]},
             {"input": reports[1][:6000], "source": "ignored"},
             {"id": 7, "input": "   "}]
    jsonl = tmp_path / "reports.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    server = sim(ProtocolModel())
    out = tmp_path / "out" / "results.jsonl"

    summary = run_batch([folder, jsonl], out, words=60, jobs=3, progress=False,
                        settings=sim_settings(server, tmp_path, chunk_tokens=400))

    results = {r.id: r for r in read_lines(out)}
    docs = os.path.normpath(folder)
    assert set(results) == {
        f"{docs}/nested/harbour.txt", f"{docs}/normal__pdflatex-4-pages.pdf",
        f"{docs}/enc-pw__libreoffice-writer-password.pdf",
        f"{docs}/imageonly__grayscale-image.pdf", f"{docs}/empty.txt",
        "report-a", "reports.jsonl:2", "7"}
    failed = {i: r.error for i, r in results.items() if r.status == "error"}
    assert "encrypted" in failed[f"{docs}/enc-pw__libreoffice-writer-password.pdf"]
    assert "no text layer" in failed[f"{docs}/imageonly__grayscale-image.pdf"]
    assert "empty document" in failed[f"{docs}/empty.txt"]
    assert "empty document" in failed["7"]
    assert all(results[i].error_kind == "input" for i in failed)
    assert (summary.documents, summary.ok, summary.failed, summary.skipped) == (8, 4, 4, 0)
    assert summary.exit_code == 1 and len(summary.failures) == 4

    texts = {f"{docs}/nested/harbour.txt": text_of("harbour"),
             f"{docs}/normal__pdflatex-4-pages.pdf":
                 load_document(folder / "normal__pdflatex-4-pages.pdf").text,
             "report-a": lines[0]["input"], "reports.jsonl:2": lines[1]["input"]}
    for doc_id, text in texts.items():
        result = results[doc_id]
        assert result.status == "ok" and result.answer and result.citations, doc_id
        assert result.task == "summary" and result.strategy == "mapreduce"
        assert result.words == 60 and result.usage.llm_calls >= 2
        assert_exact_citations(result, text)
    assert results["reports.jsonl:2"].source == f"{jsonl}:2"
    assert results["report-a"].source == f"{jsonl}:1"
    assert results[f"{docs}/normal__pdflatex-4-pages.pdf"].citations[0].page is not None


def test_bad_inputs_are_refused_before_any_work(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", ["harbour"])
    (tmp_path / "notes.docx").write_bytes(b"PK")
    (tmp_path / "bad.jsonl").write_text('{"input": "fine"}\n{"text": "no input"}\n')
    (tmp_path / "broken.jsonl").write_text('{"input": "cut\n')
    (tmp_path / "dup.jsonl").write_text('{"id": "a", "input": "one"}\n{"id": "a", "input": "two"}')
    (tmp_path / "nothing").mkdir()
    for inputs, message in [
        (["absent.txt"], "absent.txt: not found"),
        (["notes.docx"], "notes.docx: unsupported input"),
        (["bad.jsonl"], 'bad.jsonl:2: a line must be an object with an "input" string'),
        (["broken.jsonl"], "broken.jsonl:1: not a JSON line"),
        (["dup.jsonl"], "id 'a' names two different documents"),
        (["nothing"], "no documents"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            collect_inputs([tmp_path / i for i in inputs])
    # The same file twice (directly and through its folder) is one document.
    items = collect_inputs([tmp_path / "docs", tmp_path / "docs" / "harbour.txt"])
    assert [i.id for i in items] == [os.path.normpath(tmp_path / "docs" / "harbour.txt")]


# --- resuming ---------------------------------------------------------------------------------


def test_resume_after_backend_failures_processes_only_the_missing(sim, tmp_path: Path) -> None:
    """The server fails after two documents: the batch records three failures and stops
    (one document in flight + 2), leaving one document unvisited; a line cut by a kill is
    ignored; the rerun skips the two done documents, processes the four others, and leaves
    exactly one ok line per document."""
    paths = sorted(map(str, write_docs(tmp_path / "docs", TOPICS)))
    responder = Failing(healthy=2)
    server = sim(responder)
    settings = sim_settings(server, tmp_path, use_cache=False)
    out = tmp_path / "results.jsonl"
    run = {"words": 40, "strategy": "direct", "jobs": 1, "progress": False,
           "settings": settings}

    with pytest.raises(BackendError, match="failed on 3 documents in a row; stopped"):
        run_batch([tmp_path / "docs"], out, **run)
    first = read_lines(out)
    assert [(r.id, r.status) for r in first] == list(zip(
        paths[:5], ["ok", "ok", "error", "error", "error"], strict=True))
    assert all(r.error_kind == "backend" and "HTTP 500" in (r.error or "")
               for r in first[2:])
    with out.open("a") as handle:  # a kill in the middle of a line
        handle.write('{"id": "cut sho')

    responder.healthy = 10**6
    server.requests.clear()
    summary = run_batch([tmp_path / "docs"], out, **run)

    assert (summary.skipped, summary.ok, summary.failed) == (2, 4, 0)
    assert sorted(prompted_topics(server)) == sorted(Path(p).stem for p in paths[2:])
    results = read_lines(out)
    ok_ids = [r.id for r in results if r.status == "ok"]
    assert sorted(ok_ids) == paths and len(set(ok_ids)) == len(ok_ids)
    assert len(results) == 5 + 4
    assert len(out.read_text().splitlines()) == 5 + 1 + 4  # the cut line is kept, skipped

    # Same documents, another request: nothing is reused.
    server.requests.clear()
    again = run_batch([tmp_path / "docs"], out, **{**run, "words": 50})
    assert (again.skipped, again.ok) == (0, 6) and len(server.requests) == 6


def test_killed_cli_batch_loses_nothing_finished(sim, tmp_path: Path) -> None:
    """SIGKILL a `longdoc batch` while it works; the finished lines are all there and a
    rerun processes only what was not finished."""
    write_docs(tmp_path / "docs", TOPICS)
    model = ProtocolModel()
    server = sim(lambda m: Fault(delay_s=0.8, then=model(m)))
    env = {**sim_env(server), "LONGDOC_CACHE_DIR": str(tmp_path / "cache"),
           "LONGDOC_USE_CACHE": "false"}
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "longdoc", "batch", "summarize", "docs", "--out", str(out),
               "--strategy", "direct", "--words", "40", "--jobs", "1", "--json"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
            not out.is_file() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    finished = read_lines(out)
    assert 2 <= len(finished) < len(TOPICS)
    assert all(r.status == "ok" for r in finished)
    asked_before = len(server.requests)

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)

    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == len(finished)
    assert summary["ok"] == len(TOPICS) - len(finished)
    asked_again = prompted_topics(server)[asked_before:]
    assert not {Path(r.id).stem for r in finished} & set(asked_again)
    results = read_lines(out)
    assert sorted(r.id for r in results) == sorted(f"docs/{t}.txt" for t in TOPICS)


# --- concurrency --------------------------------------------------------------------------------


def test_documents_in_flight_share_the_request_limit(sim, tmp_path: Path) -> None:
    """Four documents in flight over a pipeline whose limit is two requests: the server
    sees two requests at once at most, and documents do overlap."""
    write_docs(tmp_path / "docs", TOPICS)
    server = sim(ProtocolModel(), latency=LatencyModel(fixed_s=0.3))
    summary = run_batch([tmp_path / "docs"], tmp_path / "out.jsonl", words=40,
                        strategy="direct", jobs=4, progress=False,
                        settings=sim_settings(server, tmp_path, concurrency=2,
                                              use_cache=False))
    assert summary.ok == len(TOPICS)
    stats = server.in_flight()
    assert stats.requests == len(TOPICS) and stats.peak == 2


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_server(sim, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    server = sim(ProtocolModel())
    for key, value in sim_env(server).items():
        if key.startswith("LONGDOC_"):
            monkeypatch.setenv(key, value)
    return server


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["batch", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_exit_codes_and_messages(cli_server: SimServer, tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", TOPICS[:2])
    (tmp_path / "docs" / "empty.md").write_text("")
    (tmp_path / "good").mkdir()
    write_docs(tmp_path / "good", TOPICS[2:4])

    code, stdout, stderr = invoke("summarize", "good", "-o", "good.jsonl", "--words", "40")
    assert code == 0, stderr
    assert "2 document(s): 2 done, 0 failed, 0 already done" in stdout

    code, stdout, _ = invoke("summarize", "docs", "-o", "docs.jsonl", "--json")
    assert code == 1
    summary = json.loads(stdout)
    assert (summary["ok"], summary["failed"]) == (2, 1)
    assert summary["failures"] == [{"id": "docs/empty.md",
                                    "error": "empty.md: empty document (0-byte file)"}]

    code, stdout, stderr = invoke("summarize", "docs", "-o", "docs.jsonl")
    assert code == 1 and "failed docs/empty.md: empty.md: empty document" in stderr
    assert "0 done, 1 failed, 2 already done" in stdout and "rerun to retry" in stdout

    code, stdout, stderr = invoke("ask", "good", "docs/harbour.txt", "-o", "qa.jsonl",
                                  "-q", "When was the library rebuilt?", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["ok"] == 3
    answers = {r.id: r for r in read_lines(tmp_path / "qa.jsonl")}
    assert answers["good/library.txt"].question == "When was the library rebuilt?"
    assert answers["good/library.txt"].task == "qa"

    for args, message in [
        (["summarize", "absent", "-o", "x.jsonl"], "absent: not found"),
        (["summarize", "good", "-o", "x.jsonl", "--strategy", "nope"], "unknown strategy"),
        (["summarize", "good", "-o", "x.jsonl", "--words", "3"], "--words must be between"),
        (["ask", "good", "-o", "x.jsonl", "-q", " "], "the question is empty"),
        (["summarize", "good", "-o", "good"], "is a folder"),
    ]:
        code, stdout, stderr = invoke(*args)
        assert code == 2 and message in stderr and not stdout, args
    for args in (["summarize", "good"], ["summarize", "-o", "x.jsonl"],
                 ["summarize", "good", "-o", "x.jsonl", "--jobs", "0"]):
        code, _, _ = invoke(*args)
        assert code == 2, args
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_backend_down_exits_3(sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_docs(tmp_path / "docs", TOPICS)
    server = sim(lambda m: Fault(status=500))
    for key, value in sim_env(server).items():
        if key.startswith("LONGDOC_"):
            monkeypatch.setenv(key, value)
    code, stdout, stderr = invoke("summarize", "docs", "-o", "out.jsonl", "--strategy",
                                  "direct", "--jobs", "2", "--json")
    assert code == 3 and not stdout
    assert "failed on 4 documents in a row" in stderr and "rerun to resume" in stderr
    assert len(read_lines(tmp_path / "out.jsonl")) == 4


# --- Ray ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_batch_with_two_workers(local_ray: None, sim, tmp_path: Path) -> None:
    """Documents run as Ray tasks on two workers against the driver's endpoint; the
    driver writes every line, failures included, and a rerun skips them all."""
    write_docs(tmp_path / "docs", TOPICS[:4])
    (tmp_path / "docs" / "empty.txt").write_text("")
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(json.dumps({"id": "orchard-line", "input": text_of("orchard")}) + "\n")
    server = sim(ProtocolModel(), latency=LatencyModel(fixed_s=0.05))
    out = tmp_path / "results.jsonl"
    settings = sim_settings(server, tmp_path)
    run: dict[str, object] = {"words": 40, "jobs": 2, "use_ray": True, "progress": False,
                              "settings": settings}

    summary = run_batch([tmp_path / "docs", jsonl], out, **run)

    assert (summary.documents, summary.ok, summary.failed) == (6, 5, 1)
    results = {r.id: r for r in read_lines(out)}
    assert len(results) == 6 and "empty document" in (results[
        os.path.normpath(tmp_path / "docs" / "empty.txt")].error or "")
    for topic in TOPICS[:4]:
        result = results[os.path.normpath(tmp_path / "docs" / f"{topic}.txt")]
        assert result.status == "ok" and result.citations
        assert_exact_citations(result, text_of(topic))
    assert_exact_citations(results["orchard-line"], text_of("orchard"))
    assert server.requests  # the workers called the driver's endpoint
    asked = len(server.requests)

    again = run_batch([tmp_path / "docs", jsonl], out, **run)
    assert (again.skipped, again.ok, again.failed) == (5, 0, 1)
    assert len(server.requests) == asked  # an empty file fails before any LLM call


# --- the real model -----------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_model_batch_of_two_tiny_documents(real_endpoint, tmp_path: Path) -> None:
    """Two documents in flight on the embedded model (direct: one call each, for CI time)."""
    texts = {topic: text_of(topic) for topic in ("harbour", "library")}
    folder = tmp_path / "docs"
    write_docs(folder, list(texts))
    summary = run_batch([folder], tmp_path / "out.jsonl", words=40, strategy="direct", jobs=2,
                        progress=False, settings=real_settings(real_endpoint, tmp_path))
    assert (summary.ok, summary.failed) == (2, 0)
    assert summary.llm_calls == 2 and summary.prompt_tokens > 0
    for result in read_lines(tmp_path / "out.jsonl"):
        topic = Path(result.id).stem
        assert result.status == "ok" and len(result.answer.split()) >= 3, result
        assert topic[:5] in result.answer.lower()  # "harbo(u)r", "libra(ry)": its own document
        assert result.model == real_endpoint.model
        assert_exact_citations(result, texts[topic])


# --- reliability (issue 17) -------------------------------------------------------------------


def test_empty_replies_fail_the_documents_and_are_redone_by_a_rerun(sim, tmp_path: Path) -> None:
    """An empty reply is a backend fault: never an ok line with an empty answer, never
    cached, so a rerun against a healthy server answers every document."""
    write_docs(tmp_path / "docs", TOPICS[:2])  # two: three failures in a row stop a batch
    broken = sim(lambda messages: "")
    out = tmp_path / "results.jsonl"
    run = {"words": 40, "strategy": "direct", "jobs": 1, "progress": False}
    summary = run_batch([tmp_path / "docs"], out, settings=sim_settings(broken, tmp_path), **run)
    assert (summary.ok, summary.failed) == (0, 2)
    assert all(r.status == "error" and "empty reply" in (r.error or "") for r in read_lines(out))

    healthy = sim(ProtocolModel())
    settings = sim_settings(healthy, tmp_path, model=broken.model)  # same cache keys
    again = run_batch([tmp_path / "docs"], out, settings=settings, **run)
    assert (again.skipped, again.ok, again.failed) == (0, 2, 0)
    assert len(healthy.requests) == 2
    assert all(r.answer.strip() for r in read_lines(out) if r.status == "ok")


def test_jsonl_lines_holding_unicode_line_separators(tmp_path: Path) -> None:
    lines = [{"id": "a", "input": "First\u2028line and\u0085more"},
             {"id": "b", "input": "Second\u2029doc\x1c\x1d\x1e text"}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\r\n",
                    encoding="utf-8")
    items = collect_inputs([path])
    assert [(i.id, i.text) for i in items] == [("a", lines[0]["input"]),
                                               ("b", lines[1]["input"])]
    assert [i.source for i in items] == [f"{path}:1", f"{path}:2"]


def test_refused_requests_do_not_stop_the_batch(sim, tmp_path: Path) -> None:
    """HTTP 400 (a prompt over the server's window) is the document's failure, not an
    outage: it does not count toward the streak that stops a batch."""
    write_docs(tmp_path / "docs", TOPICS)
    server = sim(lambda messages: Fault(status=400, body='{"error": {"message": "too long"}}'))
    summary = run_batch([tmp_path / "docs"], tmp_path / "out.jsonl", words=40,
                        strategy="direct", jobs=1, progress=False,
                        settings=sim_settings(server, tmp_path))
    assert (summary.ok, summary.failed) == (0, 6)
    assert {r.error_kind for r in read_lines(tmp_path / "out.jsonl")} == {"request"}


def test_jsonl_texts_are_read_as_named_text_files_without_writing_them(
        sim, tmp_path: Path) -> None:
    """A JSONL line's text goes to the pipeline as a document named ``<id>.txt`` (the name
    the model sees), checked as a text file is: NUL bytes are refused as binary."""
    server = sim(ProtocolModel())
    jsonl = tmp_path / "lines.jsonl"
    good = text_of("harbour")
    jsonl.write_text(json.dumps({"id": "report 1", "input": good}) + "\n"
                     + json.dumps({"id": "bin", "input": "a\x00b" * 50}) + "\n")
    out = tmp_path / "out.jsonl"
    run_batch([jsonl], out, task="qa", question="What did the harbour master record?",
              strategy="direct", progress=False, settings=sim_settings(server, tmp_path))
    results = {r.id: r for r in read_lines(out)}
    assert results["report 1"].status == "ok"
    assert_exact_citations(results["report 1"], good)
    assert (results["bin"].error_kind, results["bin"].error) == (
        "input", "bin.txt: binary file (NUL bytes), not text")
    [request] = server.requests
    assert '<document name="report_1.txt">' in request["messages"][-1]["content"]


def test_failures_are_classified_and_a_backend_streak_stops_a_run() -> None:
    """One classification for batch, eval and the app; the streak allows the requests in
    flight plus two backend failures in a row, and anything else resets it."""
    from longdoc.pipeline.api import BackendStreak, Outcome
    from longdoc.pipeline.errors import OverBudgetError
    from longdoc.pipeline.llm import RejectedRequest

    cases = [(InputError("x.txt: empty document"), "input", "x.txt: empty document"),
             (OverBudgetError("too long"), "over_budget", "over budget: too long"),
             (RejectedRequest("HTTP 400"), "request", "model backend: HTTP 400"),
             (BackendError("timed out"), "backend", "model backend: timed out"),
             (KeyError("k"), "internal", "internal error: KeyError: 'k'")]
    for exc, kind, message in cases:
        outcome = Outcome.failed(exc, 1.23456)
        assert (outcome.failure, outcome.error, outcome.elapsed_s) == (kind, message, 1.235)
        assert outcome.answer is None and outcome.exception is exc
    streak = BackendStreak(in_flight=2, unit="documents")
    for failure in ("backend", "backend", "request", "backend", "backend", "backend"):
        streak.record(failure, "model backend: timed out")
    with pytest.raises(BackendError, match=r"failed on 4 documents in a row; stopped \(3 done"):
        streak.record("backend", "model backend: timed out", "3 done")
