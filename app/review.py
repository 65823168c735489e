"""The review app's Streamlit script (``longdoc app`` runs it): ask or summarize with one or
several strategies, read each answer with its citations highlighted in context, its trace
and cost, and record verdicts. The logic lives in the modules beside it."""

from __future__ import annotations

import hmac
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from longdoc.agents import DEFAULT_STRATEGY, strategies_for
from longdoc.app.compare import (
    article_caption,
    comparison_rows,
    route_label,
    trace_rows,
    usage_rows,
    verdict_rows,
)
from longdoc.app.highlight import answer_html, citation_html
from longdoc.app.launch import app_token, documents_from_argv
from longdoc.app.runs import (
    UPLOAD_TYPES,
    UPLOADS_DIR,
    BackendChoice,
    ReviewRequest,
    StrategyRun,
    close_pipeline,
    document_refs,
    load_for_review,
    open_pipeline,
    run_strategy,
    sample_documents,
    save_upload,
)
from longdoc.app.verdicts import (
    MARKS,
    VERDICTS_FILE,
    Mark,
    Verdict,
    VerdictStore,
    verdicts_path,
)
from longdoc.pipeline.api import (
    Pipeline,
)
from longdoc.pipeline.errors import InputError, LongdocError
from longdoc.pipeline.models import (
    DEFAULT_SUMMARY_WORDS,
    DEFAULT_WRITE_WORDS,
    MAX_SUMMARY_WORDS,
    MAX_WRITE_WORDS,
    MIN_SUMMARY_WORDS,
    MIN_WRITE_WORDS,
    Answer,
)
from longdoc.pipeline.settings import Settings, load_settings

BACKENDS = ("embedded", "openai", "vllm")
TASKS = {"Ask a question": "qa", "Summarize": "summary", "Write an article": "write"}
NOT_REVIEWED = "not reviewed"
COLUMNS_PER_ROW = 3


@st.cache_resource(scope="session", max_entries=1, on_release=close_pipeline,
                   show_spinner="Starting the model backend…")
def session_pipeline(choice: BackendChoice) -> Pipeline:
    """One pipeline per browser session (model servers are shared between sessions); a new
    choice replaces it."""
    return open_pipeline(choice)


def sidebar(base: Settings) -> tuple[BackendChoice, str, VerdictStore]:
    """Backend, reviewer and verdict file. The endpoint comes from the settings (command
    line, LONGDOC_*, a named config file), never from the page: whoever opens the page must
    not be able to send the documents elsewhere."""
    with st.sidebar:
        st.header("Backend")
        backend = st.radio("Model backend", BACKENDS, key="backend", horizontal=True,
                           index=BACKENDS.index(base.backend))
        base_url = model = None
        if backend == "openai":
            base_url, model = base.server.base_url, base.server.model
            st.caption(f"Endpoint: {base_url or 'not set (LONGDOC_BASE_URL)'}"
                       f"{f', model {model}' if model else ''}")
        st.header("Review")
        reviewer = st.text_input("Reviewer", os.environ.get("USER", ""), key="reviewer")
        name = st.text_input("Verdicts file (a name in the cache folder)", VERDICTS_FILE,
                             key="verdicts_name")
    choice = BackendChoice(backend=backend, base_url=base_url, model=model)
    try:
        store = VerdictStore(verdicts_path(base.cache_dir, name))
    except LongdocError as error:
        st.sidebar.error(str(error))
        store = VerdictStore(base.cache_dir / VERDICTS_FILE)
    return choice, reviewer, store


def authorized() -> bool:
    """Whether this session may use the app: always when ``longdoc app`` set no token, else
    once the page's token field matches it (Streamlit has no authentication of its own)."""
    token = app_token()
    if not token or st.session_state.get("authorized"):
        return True
    given = st.text_input("Access token", type="password", key="token",
                          help="The token `longdoc app --token` was started with")
    if given and hmac.compare_digest(given.encode(), token.encode()):
        st.session_state["authorized"] = True
        st.rerun()
    if given:
        st.error("Wrong token.")
    return False


def choose_documents(base: Settings) -> list[Path]:
    """Documents picked from the samples (or the command line's) plus uploads."""
    known = documents_from_argv(sys.argv) or sample_documents()
    labels = {p.name if [q.name for q in known].count(p.name) == 1 else str(p): p for p in known}
    picked = st.multiselect("Documents", list(labels), default=list(labels)[:1] or None,
                            key="documents")
    uploads = st.file_uploader("Or upload PDF / text / Markdown files", type=list(UPLOAD_TYPES),
                               accept_multiple_files=True, key="uploads")
    paths = [labels[label] for label in picked]
    for upload in uploads or []:
        paths.append(save_upload(upload.name, upload.getvalue(), base.cache_dir / UPLOADS_DIR))
    return paths


def request_form(base: Settings) -> tuple[ReviewRequest | None, list[Path], str | None]:
    """The documents, the question or summary length and the strategies; the request once
    Run is pressed (None before, or when the input is incomplete)."""
    paths = choose_documents(base)
    with st.expander("Encrypted PDF?"):
        password = st.text_input("PDF password", "", key="password", type="password") or None
    task = TASKS[st.radio("Task", list(TASKS), key="task", horizontal=True)]
    question, words = "", None
    if task == "qa":
        question = st.text_area("Question", key="question", height=80)
        options = strategies_for("qa")
        default = [DEFAULT_STRATEGY["qa"]]
    elif task == "write":
        question = st.text_input("Topic", key="topic")
        words = int(st.number_input("Article length (words)", MIN_WRITE_WORDS, MAX_WRITE_WORDS,
                                    DEFAULT_WRITE_WORDS, step=100, key="write_words"))
        options, default = ["write"], ["write"]
    else:
        words = int(st.number_input("Summary length (words)", MIN_SUMMARY_WORDS,
                                    MAX_SUMMARY_WORDS, DEFAULT_SUMMARY_WORDS, step=50,
                                    key="words"))
        options, default = strategies_for("summary"), [DEFAULT_STRATEGY["summary"]]
    strategies = st.multiselect("Strategies (several run side by side)", options, default,
                                key=f"strategies_{task}")
    if not st.button("Run", type="primary", key="run"):
        return None, paths, password
    if not paths:
        st.error("Choose or upload at least one document.")
    elif task == "qa" and not question.strip():
        st.error("Type a question.")
    elif task == "write" and not question.strip():
        st.error("Type a topic.")
    elif not strategies:
        st.error("Choose at least one strategy.")
    else:
        return ReviewRequest(task=task, question=question.strip(), words=words, documents=[],
                             strategies=strategies), paths, password
    return None, paths, password


def run_review(request: ReviewRequest, paths: list[Path], password: str | None,
               choice: BackendChoice) -> None:
    """Load the documents, run every strategy, keep the result in the session."""
    try:
        documents = load_for_review(paths, choice.settings(), password)
        pipeline = session_pipeline(choice)
    except LongdocError as error:
        st.session_state.pop("review", None)
        st.error(str(error))
        return
    request = request.model_copy(update={"documents": document_refs(documents)})
    runs: list[StrategyRun] = []
    with st.status("Running…", expanded=False) as status:
        for strategy in request.strategies:
            status.update(label=f"Running {strategy}…")
            runs.append(run_strategy(pipeline, request, strategy, password))
        failed = sum(r.answer is None for r in runs)
        status.update(label=f"Done: {len(runs) - failed} answered, {failed} failed",
                      state="error" if failed == len(runs) else "complete")
    st.session_state["review"] = {
        "id": uuid.uuid4().hex[:8], "request": request, "runs": runs,
        "texts": {d.source: d.text for d in documents},
    }


def show_trace(answer: Answer, key: str) -> None:
    with st.expander(f"Trace and usage ({len(answer.trace)} events)"):
        if answer.route:
            st.text(f"route: {answer.route.get('chosen')} — {answer.route.get('reason', '')}")
        st.dataframe(usage_rows(answer.usage), hide_index=True)
        st.dataframe(trace_rows(answer.trace), hide_index=True)
        if answer.trace:
            index = st.selectbox("Event details", range(len(answer.trace)), key=f"event-{key}",
                                 format_func=lambda i: f"#{i} {answer.trace[i].node}")
            event = answer.trace[index]
            st.text(f"{event.node}: {event.message}")
            st.json(event.data, expanded=True)


def show_run(run: StrategyRun, review: dict[str, Any], index: int, reviewer: str,
             store: VerdictStore) -> None:
    """One strategy's answer, its citations in context, the verdict form and the trace."""
    key = f"{review['id']}-{index}"
    if run.answer is None:
        st.subheader(run.strategy)
        st.error(run.error)
        return
    answer, request = run.answer, review["request"]
    st.subheader(route_label(answer))
    st.html(answer_html(answer))
    if answer.route:
        st.caption(f"auto: {answer.route.get('reason', '')}")
    if request.task == "write":
        st.caption(article_caption(answer))
    u = answer.usage
    st.caption(f"{u.llm_calls} LLM call(s), {u.prompt_tokens} prompt + {u.completion_tokens} "
               f"completion tokens, {u.cache_hits} cache hit(s), {answer.elapsed_s:.1f}s; "
               f"{answer.dropped_quotes} unverifiable quote(s) dropped")
    names = {d.source: d.name for d in request.documents}
    with st.form(f"verdict-{key}"):
        if not answer.citations:
            st.warning("No verified citation.")
        if not answer.supported:
            st.warning("Unsupported: no citation in the source supports this answer.")
        marks: list[tuple[Mark | None, str]] = []
        for n, citation in enumerate(answer.citations, 1):
            st.html(citation_html(n, citation, review["texts"].get(citation.source),
                                  names.get(citation.source)))
            mark = st.radio(f"Citation [{n}]", (NOT_REVIEWED, *MARKS), horizontal=True,
                            key=f"cite-{key}-{n}")
            note = st.text_input(f"Comment on [{n}]", key=f"cite-note-{key}-{n}")
            marks.append((next((m for m in MARKS if m == mark), None), note))
        verdict = st.radio("Verdict on the answer", MARKS, index=None, horizontal=True,
                           key=f"verdict-{key}")
        comment = st.text_area("Comment", key=f"comment-{key}", height=68)
        submitted = st.form_submit_button("Record verdict", key=f"submit-{key}")
    if submitted:
        if verdict is None:
            st.warning("Mark the answer correct, incorrect or unsure first.")
        else:
            try:
                store.append(Verdict.of(
                    answer, task=request.task, question=request.question, words=request.words,
                    documents=request.documents, verdict=verdict, comment=comment,
                    reviewer=reviewer, citation_marks=marks))
                st.success(f"Verdict recorded in {store.path}")
            except LongdocError as error:
                st.error(str(error))
    show_trace(answer, key)


def show_review(review: dict[str, Any], reviewer: str, store: VerdictStore) -> None:
    request: ReviewRequest = review["request"]
    runs: list[StrategyRun] = review["runs"]
    asked = (f"Question: {request.question}" if request.task == "qa"
             else f"Article on {request.question!r} in about {request.words} words"
             if request.task == "write" else f"Summary in about {request.words} words")
    st.divider()
    st.text(f"{asked}\nDocuments: {', '.join(d.name for d in request.documents)}")
    if len(runs) > 1:
        st.dataframe(comparison_rows(runs), hide_index=True)
    for row in range(0, len(runs), COLUMNS_PER_ROW):
        chunk = runs[row:row + COLUMNS_PER_ROW]
        for offset, (column, run) in enumerate(zip(st.columns(len(chunk)), chunk, strict=True)):
            with column:
                show_run(run, review, row + offset, reviewer, store)
    st.divider()
    st.subheader("Verdicts on this request")
    try:
        existing = store.for_request(request.task, request.question,
                                     [d.sha256 for d in request.documents])
        data = store.export()
    except InputError as error:
        st.error(str(error))
        return
    if existing:
        st.dataframe(verdict_rows(existing), hide_index=True)
    else:
        st.caption("No verdict on this request and these documents yet.")
    if store.skipped:
        st.warning(f"{store.skipped} line(s) of {store.path} are not verdicts; skipped.")
    st.download_button("Download all verdicts (JSONL)", data, file_name=store.path.name,
                       mime="application/jsonl", disabled=not data, key="download")


def main() -> None:
    st.set_page_config(page_title="longdoc review", layout="wide")
    st.title("longdoc review")
    if not authorized():
        st.stop()
    try:
        base = load_settings()
    except LongdocError as error:
        st.error(str(error))
        st.stop()
    choice, reviewer, store = sidebar(base)
    try:
        request, paths, password = request_form(base)
    except LongdocError as error:
        st.error(str(error))
        st.stop()
    if request is not None:
        run_review(request, paths, password, choice)
    if "review" in st.session_state:
        show_review(st.session_state["review"], reviewer, store)


main()
