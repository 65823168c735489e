"""Durable runs: a run id checkpoints every step, and a rerun resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.errors import BackendError, InputError
from tests.conftest import sim_settings
from tests.simserver import Fault

FILLER = "The harbour board met again and discussed the ferry timetable at length. "
QUESTION = "What is the secret passkey?"


def document(tmp_path: Path) -> Path:
    path = tmp_path / "log.txt"
    parts = [FILLER * 12 for _ in range(6)]
    parts[4] = FILLER * 6 + "The secret passkey is 48213. " + FILLER * 6
    path.write_text("\n\n".join(parts))
    return path


class FailingOnce:
    """Replies like a model that copies the passkey sentence; fails call ``fail_at`` once."""

    def __init__(self, fail_at: int | None):
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, messages) -> str | Fault:
        self.calls += 1
        if self.calls == self.fail_at:
            return Fault(status=500)
        if "48213" in messages[-1]["content"]:
            return "The secret passkey is 48213."
        return "Nothing about a passkey here."


def settings(server, tmp_path: Path):
    # One request at a time: with more, map calls in flight when another fails are
    # cancelled before their results are checkpointed, and are made again on resume.
    # A map call that fails fails the run here (max_failed_share 0), so that it is resumed.
    return sim_settings(server, tmp_path, use_cache=False, chunk_tokens=200, chunk_overlap=0,
                        concurrency=1, max_failed_share=0)


@pytest.mark.parametrize("strategy", ["memory", "mapreduce"])
def test_interrupted_run_resumes_without_repeating_calls(sim, tmp_path: Path,
                                                        strategy: str) -> None:
    doc = document(tmp_path)
    whole = FailingOnce(None)
    server = sim(whole)
    with Pipeline(settings(server, tmp_path)) as pipeline:
        reference = pipeline.ask(doc, QUESTION, strategy=strategy, run_id="whole")
    assert "48213" in reference.answer
    uninterrupted = whole.calls
    assert uninterrupted >= 4

    flaky = FailingOnce(fail_at=3)  # two steps complete, the third call fails
    server = sim(flaky)
    with Pipeline(settings(server, tmp_path)) as pipeline:
        with pytest.raises(BackendError):
            pipeline.ask(doc, QUESTION, strategy=strategy, run_id="flaky")
        before = flaky.calls
        # Sequential steps stop at the failure. Map calls queue for the one request slot:
        # the failing call hands it to the next before LangGraph cancels the fan-out, so
        # that call may reach the server (keep-alive makes it quick), and its answer is
        # lost with the cancellation; it is made again on resume.
        lost = before - 3
        assert lost == 0 if strategy == "memory" else lost in (0, 1)
        resumed = pipeline.ask(doc, QUESTION, strategy=strategy, run_id="flaky")
    assert resumed.answer == reference.answer
    assert [c.quote for c in resumed.citations] == [c.quote for c in reference.citations]
    answered = flaky.calls - 1  # the failed request got no answer
    assert answered == uninterrupted + lost
    assert resumed.usage.llm_calls == uninterrupted - (before - 1 - lost)


def test_finished_run_returns_its_result_without_calls(sim, tmp_path: Path) -> None:
    counter = FailingOnce(None)
    server = sim(counter)
    doc = document(tmp_path)
    with Pipeline(settings(server, tmp_path)) as pipeline:
        first = pipeline.ask(doc, QUESTION, strategy="memory", run_id="r1")
        calls = counter.calls
        again = pipeline.ask(doc, QUESTION, strategy="memory", run_id="r1")
    assert counter.calls == calls
    assert again.answer == first.answer and again.usage.llm_calls == 0


def test_run_id_of_another_request_is_refused(sim, tmp_path: Path) -> None:
    server = sim(FailingOnce(None))
    doc = document(tmp_path)
    with Pipeline(settings(server, tmp_path)) as pipeline:
        pipeline.ask(doc, QUESTION, strategy="memory", run_id="r2")
        with pytest.raises(InputError, match="belongs to another request"):
            pipeline.ask(doc, "Who chaired the board?", strategy="memory", run_id="r2")


def test_cli_run_id(sim, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import sim_env

    counter = FailingOnce(None)
    server = sim(counter)
    doc = document(tmp_path)
    command = [sys.executable, "-m", "longdoc", "ask", str(doc), "-q", QUESTION, "--strategy",
               "memory", "--run-id", "cli-run", "--json"]
    env = {**sim_env(server), "LONGDOC_USE_CACHE": "false", "LONGDOC_CHUNK_TOKENS": "200",
           "LONGDOC_CHUNK_OVERLAP": "0"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    calls = counter.calls
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert counter.calls == calls
    assert json.loads(second.stdout)["answer"] == json.loads(first.stdout)["answer"]
