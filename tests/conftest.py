"""Shared fixtures: the simulated server, settings for it, real data, the real model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from longdoc.pipeline.backends import Backend
from longdoc.pipeline.llm import Endpoint
from longdoc.pipeline.settings import Settings
from tests.simserver import Responder, SimServer

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"  # small real texts and PDFs (tests/data/README.md)
SAMPLES = REPO / "samples"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's LONGDOC_* variables, config file or cache."""
    for key in list(os.environ):
        if key.startswith("LONGDOC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LONGDOC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def test_data() -> Path:
    """The real texts and PDFs the tests carry (tests/data)."""
    return TEST_DATA


@pytest.fixture
def sim() -> Iterator[callable]:
    """Start simulated servers: ``sim(responder) -> SimServer``; all stopped after the test."""
    servers: list[SimServer] = []

    def start(responder: Responder, **kwargs: object) -> SimServer:
        server = SimServer(responder, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def sim_settings(server: SimServer, tmp_path: Path, **overrides: object) -> Settings:
    """Settings that point the openai backend at a simulated server."""
    values: dict[str, object] = {
        "backend": "openai", "base_url": server.base_url, "cache_dir": tmp_path / "cache",
        "max_retries": 0, "timeout_s": 10,
    }
    values.update(overrides)
    return Settings(**values)


def sim_env(server: SimServer) -> dict[str, str]:
    """Environment for a ``longdoc`` subprocess that talks to a simulated server."""
    return {**os.environ, "LONGDOC_BACKEND": "openai", "LONGDOC_BASE_URL": server.base_url,
            "LONGDOC_MAX_RETRIES": "0"}


@pytest.fixture(scope="session")
def real_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """The real embedded llama.cpp server with SmolLM2-135M, started once per session."""
    settings = Settings(cache_dir=tmp_path_factory.mktemp("real-cache"))
    backend = Backend(settings)
    endpoint = backend.start()
    yield endpoint
    backend.stop()


def real_settings(endpoint: Endpoint, tmp_path: Path, **overrides: object) -> Settings:
    """Settings that use the session's real embedded server (no response cache)."""
    values: dict[str, object] = {
        "backend": "openai", "base_url": endpoint.base_url, "model": endpoint.model,
        "context_window": endpoint.context_window, "cache_dir": tmp_path / "cache",
        "use_cache": False,
    }
    values.update(overrides)
    return Settings(**values)


def haystack(shared: Path, words: int, needle: str, depth: float = 0.5) -> str:
    """Real inaugural-address prose of about ``words`` words with ``needle`` at ``depth``."""
    text = " ".join(
        p.read_text() for p in sorted((shared / "inaugural").glob("*.txt"))[:10]
    ).split()[:words]
    cut = int(len(text) * depth)
    return " ".join(text[:cut]) + "\n\n" + needle + "\n\n" + " ".join(text[cut:])


def run_strategy(server: SimServer, settings: Settings, strategy: str, state: dict) -> dict:
    """Run one strategy's subgraph alone against ``server``; the final *full* state
    (internal keys such as ``map_records`` or ``step`` included)."""
    import asyncio

    from longdoc.agents import STRATEGIES
    from longdoc.pipeline.llm import LLMClient
    from longdoc.pipeline.state import RunContext

    endpoint = Endpoint(base_url=server.base_url, model=server.model,
                        context_window=server.context_window)

    async def run() -> dict:
        llm = LLMClient(endpoint, settings)
        final: dict = {}
        try:
            async for values in STRATEGIES[strategy].build().astream(
                    state, context=RunContext(settings=settings, llm=llm), stream_mode="values"):
                final = values
        finally:
            await llm.close()
        return final

    return asyncio.run(run())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fail-on-skip", action="store_true",
                     help="Fail the run if any test was skipped (scripts/test.sh sets it: a "
                     "missing piece must never pass as green)")


def _skipped(config: pytest.Config) -> list[object]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return reporter.stats.get("skipped", []) if reporter is not None else []


def pytest_terminal_summary(terminalreporter: object, exitstatus: int,
                            config: pytest.Config) -> None:
    if config.getoption("--fail-on-skip") and _skipped(config):
        terminalreporter.write_line(  # type: ignore[attr-defined]
            f"--fail-on-skip: {len(_skipped(config))} test(s) skipped, so the run fails",
            red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--fail-on-skip") and _skipped(session.config) \
            and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
