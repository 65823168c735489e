"""The review app: verdict store, highlighting, tables, launcher, and the Streamlit script
run headlessly (``AppTest``) against simulated servers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html import escape, unescape
from pathlib import Path

import httpx
import pytest

from longdoc.app import runs as app_runs
from longdoc.app.compare import comparison_rows, trace_rows, usage_rows, verdict_rows
from longdoc.app.highlight import answer_html, citation_html, snippet
from longdoc.app.launch import APP_SCRIPT, documents_from_argv, streamlit_command
from longdoc.app.runs import StrategyRun, save_upload
from longdoc.app.verdicts import DocumentRef, Verdict, VerdictStore
from longdoc.pipeline.backends import free_port
from longdoc.pipeline.errors import InputError
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.llm import Endpoint
from longdoc.pipeline.models import Answer, CallRecord, Citation, TraceEvent, Usage
from tests.conftest import SAMPLES
from tests.simserver import ProtocolModel, SimServer

streamlit_testing = pytest.importorskip("streamlit.testing.v1")

KENNEDY = SAMPLES / "kennedy-1962-state-of-the-union.pdf"
KENNEDY_QUESTION = "How far did the number of major surplus labor areas decline?"
KENNEDY_FACT = "the number of major surplus labor areas has declined"
KENNEDY_ANSWER = "from 101 to 60"  # the model's sentence fitted to the question (verify)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> [link](http://evil.example)'


def marked(html: str) -> str:
    """The highlighted text of a citation block, unescaped, whitespace collapsed."""
    inner = re.search(r"<mark[^>]*>(.*?)</mark>", html, re.S).group(1)
    return " ".join(unescape(inner).split())


def citation_in(text: str, quote: str, source: str = "doc.txt", **extra: object) -> Citation:
    start = text.index(quote)
    return Citation(**{"page": None, **extra}, source=source, start=start,
                    end=start + len(quote), quote=quote)


# --- highlighting -------------------------------------------------------------------------


def test_snippet_is_a_contiguous_span_cut_at_whitespace() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    quote = "word100 word101"
    start = text.index(quote)
    part = snippet(text, start, start + len(quote), radius=30)
    joined = part.before + part.quote + part.after
    assert part.quote == quote
    assert joined in text and text.index(joined) + len(part.before) == start
    assert part.clipped_before and part.clipped_after
    assert part.before.split()[0].startswith("word") and text[text.index(joined) - 1] == " "
    assert text[text.index(joined) + len(joined)] == " "  # ends before a space, not mid-word
    whole = snippet(text, 0, 5, radius=10_000)
    assert (whole.before, whole.clipped_before, whole.clipped_after) == ("", False, False)
    with pytest.raises(ValueError, match="outside"):
        snippet(text, 5, len(text) + 1)


def test_citation_html_escapes_document_text_and_marks_the_quote() -> None:
    quote = "The fee is <b>5 & 6</b> dollars."
    text = f"Intro. {HOSTILE}\n{quote}\nAfter {HOSTILE} end."
    html = citation_html(1, citation_in(text, quote, page=3), text, name="<i>doc</i>.txt")
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "<i>" not in html and "&lt;i&gt;doc&lt;/i&gt;.txt" in html
    assert f">{escape(quote)}</mark>" in html
    assert escape('<script>alert("x")</script>') in html
    assert f"[1] &lt;i&gt;doc&lt;/i&gt;.txt, page 3, chars {text.index(quote)}-" in html


def test_single_line_breaks_flow_and_paragraph_breaks_stay() -> None:
    text = "Line one\nwraps here.\r\nNext line.\n\nNew paragraph\r\n\r\nand another."
    quote = "wraps here.\r\nNext"
    html = citation_html(1, citation_in(text, quote), text)
    assert ">wraps here. Next</mark>" in html
    assert ">Line one <mark" in html and "line.\n\nNew paragraph\r\n\r\nand" in html


def test_citation_html_warns_when_the_text_no_longer_holds_the_quote() -> None:
    text = "Alpha beta gamma. The passkey is 48213. Delta."
    citation = citation_in(text, "The passkey is 48213.")
    changed = text.replace("48213", "99999")
    html = citation_html(2, citation, changed)
    assert "no longer holds" in html and ">The passkey is 48213.</mark>" in html
    assert "not loaded" in citation_html(2, citation, None)


def test_answer_html_escapes_and_numbers_summary_paragraphs() -> None:
    text = "One fact here. Another fact there."
    answer = Answer(
        answer=f"First {HOSTILE}\n\nSecond paragraph.", strategy="mapreduce",
        citations=[citation_in(text, "One fact here.", paragraph=1),
                   citation_in(text, "Another fact there.", paragraph=2),
                   citation_in(text, "One fact here.", paragraph=2)])
    html = answer_html(answer)
    assert "<script" not in html and "<img" not in html
    assert html.count("<p ") == 2
    assert '<sup class="longdoc-marks">[1]</sup>' in html
    assert '<sup class="longdoc-marks">[2][3]</sup>' in html


# --- verdicts -------------------------------------------------------------------------------


def sample_answer() -> Answer:
    text = "The harbour was dredged. The secret passkey is 48213. The end."
    return Answer(answer="48213", strategy="auto",
                  route={"chosen": "direct", "reason": "fits"},
                  citations=[citation_in(text, "The secret passkey is 48213."),
                             citation_in(text, "The harbour was dredged.")])


DOCS = [DocumentRef(name="doc.txt", source="/tmp/doc.txt", sha256="a" * 64),
        DocumentRef(name="b.pdf", source="/tmp/b.pdf", sha256="b" * 64)]


def test_verdict_of_answer_keeps_spans_and_citation_marks() -> None:
    verdict = Verdict.of(sample_answer(), task="qa", question="  What is the passkey? ",
                         documents=DOCS, verdict="correct", comment=" fine ", reviewer="ann",
                         words=300, citation_marks=[("correct", "exact"), (None, "")])
    assert (verdict.question, verdict.comment, verdict.words) == ("What is the passkey?",
                                                                  "fine", None)
    assert (verdict.strategy, verdict.route) == ("auto", "direct")
    assert [(c.verdict, c.comment) for c in verdict.citations] == [("correct", "exact"),
                                                                   (None, "")]
    c = verdict.citations[0]
    assert (c.start, c.end, c.quote) == (25, 53, "The secret passkey is 48213.")
    assert verdict.timestamp.tzinfo is not None
    short = Verdict.of(sample_answer(), task="summary", question="", documents=DOCS,
                       verdict="unsure", words=120)  # no citation marks: all unreviewed
    assert short.words == 120 and [c.verdict for c in short.citations] == [None, None]


def test_verdict_store_appends_reads_filters_and_exports(tmp_path: Path) -> None:
    store = VerdictStore(tmp_path / "new" / "verdicts.jsonl")
    assert store.read() == [] and store.export() == b""
    first = Verdict.of(sample_answer(), task="qa", question="What is the passkey?",
                       documents=DOCS, verdict="correct", reviewer="ann")
    other_question = first.model_copy(update={"question": "Who dredged?", "verdict": "unsure"})
    other_docs = first.model_copy(update={"documents": DOCS[:1], "verdict": "incorrect"})
    summary = first.model_copy(update={"task": "summary", "question": ""})
    for verdict in (first, other_question, other_docs, summary):
        store.append(verdict)
    with store.path.open("a") as f:
        f.write("not json\n\n" + json.dumps({"verdict": "maybe"}) + "\n")
    assert store.read() == [first, other_question, other_docs, summary]
    assert store.skipped == 2
    # Same question and documents, whatever the order of the hashes.
    assert store.for_request("qa", "What is the passkey? ", ["b" * 64, "a" * 64]) == [first]
    assert store.for_request("summary", "", ["a" * 64, "b" * 64]) == [summary]
    lines = store.export().decode().splitlines()
    assert len(lines) == 7  # four verdicts, the two bad lines and the blank one, as stored
    assert Verdict.model_validate_json(lines[0]) == first
    rows = verdict_rows([first, other_question])
    assert [r["verdict"] for r in rows] == ["unsure", "correct"]  # newest first
    assert rows[1]["strategy"] == "auto → direct"


def test_verdict_store_write_failure_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    verdict = Verdict.of(sample_answer(), task="qa", question="q", documents=DOCS,
                         verdict="correct")
    with pytest.raises(InputError, match="cannot write verdicts"):
        VerdictStore(tmp_path / "dir.jsonl").append(verdict)


# --- tables, uploads, launcher --------------------------------------------------------------


def test_comparison_usage_and_trace_rows() -> None:
    usage = Usage.from_calls([
        CallRecord(node="map", prompt_tokens=100, completion_tokens=10, latency_s=0.5),
        CallRecord(node="map", prompt_tokens=120, completion_tokens=12, latency_s=0.25),
        CallRecord(node="reduce", cached=True)])
    answer = sample_answer().model_copy(update={
        "usage": usage, "elapsed_s": 1.5, "dropped_quotes": 1,
        "trace": [TraceEvent(node="route", message="chose direct", data={"x": "y" * 500}),
                  TraceEvent(node="verify", message="ok")]})
    rows = comparison_rows([StrategyRun(strategy="auto", answer=answer),
                            StrategyRun(strategy="direct", error="too long")])
    assert rows[0] | {"answer": "48213"} == {
        "strategy": "auto → direct", "status": "ok", "answer": "48213", "supported": False,
        "citations": 2, "dropped_quotes": 1, "llm_calls": 2, "prompt_tokens": 220,
        "completion_tokens": 22, "cache_hits": 1, "seconds": 1.5}
    assert rows[1] == {"strategy": "direct", "status": "error", "answer": "too long"}
    by_node = {r["node"]: r for r in usage_rows(usage)}
    assert by_node["map"]["llm_calls"] == 2 and by_node["reduce"]["cache_hits"] == 1
    assert by_node["total"]["prompt_tokens"] == 220 and by_node["total"]["llm_seconds"] == 0.75
    trace = trace_rows(answer.trace)
    assert [(r["#"], r["node"]) for r in trace] == [(0, "route"), (1, "verify")]
    assert len(trace[0]["data"]) == 200 and trace[0]["data"].endswith("…")
    assert trace[1]["data"] == ""


def test_save_upload_stays_in_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    path = save_upload("../../evil.txt", b"hello", folder)
    assert path.read_bytes() == b"hello" and folder in path.parents and path.name == "evil.txt"
    assert save_upload("C:\\x\\evil.txt", b"hello", folder) == path
    assert save_upload("..", b"other", folder).name == "upload"


def test_streamlit_command_and_script_arguments(tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("text")
    command = streamlit_command([doc], port=8765, browser=False)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    flags = dict(zip(command[5:-2:2], command[6:-2:2], strict=True))
    assert flags == {"--browser.gatherUsageStats": "false", "--client.toolbarMode": "minimal",
                     "--server.address": "127.0.0.1",
                     "--server.headless": "true", "--server.port": "8765"}
    assert command[-2:] == ["--", str(doc.resolve())]
    with pytest.raises(InputError, match=r"missing\.pdf: file not found"):
        streamlit_command([tmp_path / "missing.pdf"])
    assert documents_from_argv([str(APP_SCRIPT), str(doc)]) == [doc]
    assert documents_from_argv(["/usr/bin/pytest", "-q"]) == []


def test_longdoc_app_serves_the_app(tmp_path: Path) -> None:
    """``longdoc app`` starts a real Streamlit server that answers its health check."""
    port = free_port()
    longdoc = Path(sys.executable).with_name("longdoc")
    process = subprocess.Popen([str(longdoc), "app", str(KENNEDY), "--port", str(port),
                                "--no-browser"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None and health.status_code == 200 and health.text == "ok"
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the Streamlit script, headless ---------------------------------------------------------


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[callable]:
    """``app_env(server, **settings)``: point the app's settings at ``server``; every
    session's pipeline is released after the test."""
    import streamlit as st

    def point(server: SimServer, **settings: str) -> None:
        values = {"BACKEND": "openai", "BASE_URL": server.base_url, "MAX_RETRIES": "0",
                  "EMBEDDER": "hash", **settings}
        for key, value in values.items():
            monkeypatch.setenv(f"LONGDOC_{key.upper()}", value)

    yield point
    st.cache_resource.clear()
    assert not list(app_runs._open), "a pipeline outlived its session cache"


def start_app() -> streamlit_testing.AppTest:
    at = streamlit_testing.AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.run()
    assert not at.exception and not at.error
    return at


def run_question(at: streamlit_testing.AppTest, question: str,
                 strategies: list[str]) -> None:
    at.text_area(key="question").input(question)
    at.multiselect(key="strategies_qa").set_value(strategies)
    at.button(key="run").click().run()
    assert not at.exception


def marks(at: streamlit_testing.AppTest) -> list[str]:
    return [h.value for h in at.html if "<mark" in h.value]


def test_app_compares_two_strategies_and_records_a_verdict(sim, app_env, tmp_path: Path) -> None:
    server = sim(ProtocolModel())
    app_env(server)
    at = start_app()
    assert at.multiselect(key="documents").value == [KENNEDY.name]  # the bundled sample
    run_question(at, KENNEDY_QUESTION, ["direct", "rag"])
    assert not at.error
    assert [s.value for s in at.subheader][:2] == ["direct", "rag"]
    table = at.dataframe[0].value
    assert list(table["strategy"]) == ["direct", "rag"] and list(table["status"]) == ["ok"] * 2
    answers = [h.value for h in at.html if "longdoc-answer" in h.value]
    assert len(answers) == 2 and all(KENNEDY_ANSWER in a for a in answers)

    # Each citation: label with page and span, its quote highlighted inside its context.
    text = load_document(KENNEDY).text
    cited = marks(at)
    assert len(cited) == 2
    for html in cited:
        label = html.split("</div>")[0]
        assert "kennedy-1962-state-of-the-union.pdf, page 1, chars " in label
        start, end = map(int, re.search(r"chars (\d+)-(\d+)", label).groups())
        assert marked(html) == " ".join(text[start:end].split())
        assert KENNEDY_FACT in " ".join(text[start:end].split())
        assert "…" in html  # surrounded by context, cut from a longer page

    key = next(r.key for r in at.radio if r.key.startswith("verdict-") and r.key.endswith("-1"))
    run_key = key.removeprefix("verdict-")
    at.radio(key=key).set_value("incorrect")
    at.radio(key=f"cite-{run_key}-1").set_value("correct")
    at.text_input(key=f"cite-note-{run_key}-1").input("right sentence")
    at.text_area(key=f"comment-{run_key}").input("answer should say 101 to 60")
    at.text_input(key="reviewer").input("ann")
    at.button(key=f"submit-{run_key}").click().run()
    assert not at.exception and not at.error
    assert any("Verdict recorded" in s.value for s in at.success)

    lines = (tmp_path / "cache" / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == 1
    verdict = Verdict.model_validate_json(lines[0])
    assert (verdict.question, verdict.strategy, verdict.verdict, verdict.reviewer,
            verdict.comment) == (KENNEDY_QUESTION, "rag", "incorrect", "ann",
                                 "answer should say 101 to 60")
    assert [d.sha256 for d in verdict.documents] == [load_document(KENNEDY).sha256]
    c = verdict.citations[0]
    assert (c.verdict, c.comment, c.page) == ("correct", "right sentence", 1)
    assert text[c.start:c.end] == c.quote
    assert KENNEDY_ANSWER in verdict.answer

    # The verdict is listed under the request and offered for download.
    shown = at.dataframe[-1].value
    assert list(shown["verdict"]) == ["incorrect"] and list(shown["reviewer"]) == ["ann"]
    download = at.get("download_button")[0]
    assert not download.proto.disabled

    # Trace and usage of a run.
    trace_table = next(d.value for d in at.dataframe if "message" in d.value.columns)
    assert len(trace_table) > 0 and "node" in trace_table.columns
    usage_table = next(d.value for d in at.dataframe if "llm_calls" in d.value.columns
                       and "node" in d.value.columns)
    assert usage_table.iloc[-1]["node"] == "total" and usage_table.iloc[-1]["llm_calls"] >= 1


def test_app_summary_cites_per_paragraph_and_auto_shows_its_route(sim, app_env) -> None:
    server = sim(ProtocolModel())
    app_env(server)
    at = start_app()
    at.radio(key="task").set_value("Summarize").run()
    at.number_input(key="words").set_value(120)
    at.multiselect(key="strategies_summary").set_value(["mapreduce", "auto"])
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader][:2] == ["mapreduce", "auto → direct"]
    assert any("auto: " in c.value and "fits" in c.value for c in at.caption)
    summary = next(h.value for h in at.html if "longdoc-answer" in h.value)
    assert '<sup class="longdoc-marks">[1]' in summary
    assert any("supports paragraph 1" in m for m in marks(at))


def test_app_shows_errors_as_messages(sim, app_env) -> None:
    small = sim(ProtocolModel(), context_window=1200)
    app_env(small, chunk_tokens="200", chunk_overlap="20")
    at = start_app()
    run_question(at, KENNEDY_QUESTION, ["direct", "rag"])
    # direct is over its budget: a message in its column; rag still answers.
    (error,) = at.error
    assert error.value.startswith("over budget: the documents have ~1668 tokens but the direct "
                               "path fits")
    assert list(at.dataframe[0].value["status"]) == ["error", "ok"]
    assert len(marks(at)) == 1

    at.file_uploader(key="uploads").upload("bad.pdf", b"%PDF-1.4 garbage", "application/pdf")
    at.button(key="run").click().run()
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("bad.pdf: corrupt or truncated PDF")
    assert not at.subheader  # the earlier result is withdrawn with the failed request

    at.file_uploader(key="uploads").clear()
    app_env(small, base_url=f"http://127.0.0.1:{free_port()}/v1")  # the settings, not the page
    at.button(key="run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("cannot list models at")

    at.text_area(key="question").input(" ")
    at.button(key="run").click().run()
    assert [e.value for e in at.error] == ["Type a question."]


def test_app_escapes_an_uploaded_document(sim, app_env, tmp_path: Path) -> None:
    server = sim(ProtocolModel())
    app_env(server)
    at = start_app()
    body = f"Harbour notes.\n\n{HOSTILE}\nThe secret passkey is 48213. {HOSTILE}\n\nThe end."
    at.multiselect(key="documents").set_value([])
    at.file_uploader(key="uploads").upload("<img src=x>notes.txt", body.encode(), "text/plain")
    run_question(at, "What is the secret passkey?", ["direct"])
    assert not at.error
    cited = marks(at)
    assert len(cited) == 1
    assert "<script" not in cited[0] and "<img" not in cited[0]
    assert "&lt;img src=x&gt;notes.txt" in cited[0]
    assert escape(HOSTILE) in cited[0] and "48213" in cited[0].split("<mark")[1]


def test_app_keeps_one_pipeline_per_session(sim, app_env) -> None:
    first, second = sim(ProtocolModel()), sim(ProtocolModel())
    app_env(first)
    at = start_app()
    run_question(at, KENNEDY_QUESTION, ["direct"])
    run_question(at, "What is gratifying?", ["direct"])
    assert len(list(app_runs._open)) == 1 and len(first.requests) >= 2
    (pipeline,) = app_runs._open
    assert at.radio(key="backend").value == "openai"
    app_env(second)  # the endpoint changes in the settings (the page has no field for it)
    run_question(at, "What did nonagricultural employment do?", ["direct"])
    assert not at.error
    # The new endpoint replaced the old pipeline, which was closed.
    assert len(list(app_runs._open)) == 1 and pipeline not in app_runs._open
    assert pipeline.cache is None and len(second.requests) >= 1


@pytest.mark.real_model
def test_real_model_app_answers_the_sample_side_by_side(real_endpoint, app_env) -> None:
    """The review app on the embedded model: direct and mapreduce on the bundled sample,
    each citation's highlight is the exact source span its label names."""
    app_env(real_endpoint, MODEL=real_endpoint.model,
            CONTEXT_WINDOW=str(real_endpoint.context_window), USE_CACHE="false")
    at = start_app()
    run_question(at, KENNEDY_QUESTION, ["direct", "mapreduce"])
    assert not at.error
    table = at.dataframe[0].value
    assert list(table["strategy"]) == ["direct", "mapreduce"]
    assert list(table["status"]) == ["ok", "ok"]
    answers = [h.value for h in at.html if "longdoc-answer" in h.value]
    assert len(answers) == 2
    assert "101" in answers[0] and "60" in answers[0]  # the README's answer, direct path
    text = load_document(KENNEDY).text
    cited = marks(at)
    assert cited, "no citation was highlighted"
    for html in cited:
        start, end = map(int, re.search(r"chars (\d+)-(\d+)", html).groups())
        assert marked(html) == " ".join(text[start:end].split())
    assert any("101 to 60" in marked(html) for html in cited)


def test_sessions_on_a_managed_backend_share_one_server(sim, monkeypatch, tmp_path) -> None:
    """Two sessions on the embedded backend use one model server (two would compete for
    the same cores), which stops when the last of them closes."""
    server = sim(ProtocolModel())
    events: list[str] = []

    class FakeServer:
        def __init__(self, settings) -> None:
            assert settings.backend == "embedded"
            self.endpoint = None

        def start(self) -> Endpoint:
            if self.endpoint is None:
                events.append("start")
                self.endpoint = Endpoint(base_url=server.base_url, model="sim",
                                         context_window=8192)
            return self.endpoint

        def stop(self) -> None:
            events.append("stop")

    monkeypatch.setattr(app_runs, "ModelBackend", FakeServer)
    monkeypatch.setenv("LONGDOC_CACHE_DIR", str(tmp_path / "cache"))
    choice = app_runs.BackendChoice(backend="embedded")
    first, second = app_runs.open_pipeline(choice), app_runs.open_pipeline(choice)
    try:
        assert events == ["start"]
        for pipeline in (first, second):
            assert pipeline.settings.backend == "openai"
            assert pipeline.settings.server.base_url == server.base_url
        request = app_runs.ReviewRequest(
            question=KENNEDY_QUESTION, strategies=["direct"],
            documents=app_runs.document_refs([load_document(KENNEDY)]))
        run = app_runs.run_strategy(second, request, "direct")
        assert run.error is None and KENNEDY_ANSWER in run.answer.answer
        assert len(server.requests) == 1  # answered by the shared server
        app_runs.close_pipeline(first)
        assert events == ["start"]  # the other session still uses it
    finally:
        app_runs.close_pipeline(second)
    assert events == ["start", "stop"]
    assert not list(app_runs._open) and not len(app_runs._shared)
