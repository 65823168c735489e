"""Reliability figures (issue 17) on the simulated server: faults, crashes and bad inputs.

- **faults**: a batch of 100 documents (``batch ask``, map-reduce) against a simulated
  server that answers 20 % of the calls with a fault (500, 503, 429 with Retry-After,
  connection resets, timeouts, empty and truncated replies) and that dies once and comes
  back; a batch stopped by the outage is rerun. Counts documents lost, duplicated, failed
  (each with its reason) and ok lines with an empty answer.
- **crashes**: ``longdoc batch ask`` killed with SIGKILL at random moments, 5 times, then
  run to the end; and a ``longdoc ask --run-id`` killed once and resumed. Counts finished
  documents redone, duplicated ok lines, lines cut by the kills (skipped on reading), and
  the map calls the resumed ask made again.
- **inputs**: ``longdoc extract`` on every PDF in tests/data/pdfs (and ../shared/data/pdfs
  if present) and on crafted binary, UTF-16, empty, huge and bomb files: outcome, exit code
  and seconds each.

    .venv/bin/python -m benchmarks.reliability              # all three
    .venv/bin/python -m benchmarks.reliability faults inputs

Prints Markdown tables (the "Reliability" section of benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from longdoc.pipeline.batch import BatchResult, run_batch
from longdoc.pipeline.errors import BackendError
from longdoc.pipeline.runs import JsonLog
from longdoc.pipeline.settings import Settings
from tests.simserver import Fault, LatencyModel, Messages, ProtocolModel, SimServer

REPO = Path(__file__).resolve().parents[1]
PDF_FOLDERS = (REPO / "tests" / "data" / "pdfs", REPO.parent / "shared" / "data" / "pdfs")
QUESTION = "What is the secret passkey?"
SEED = 17
DOCUMENTS = 100
FAULT_SHARE = 0.2
TIMEOUT_S = 1.0  # per request in the fault run; a "timeout" fault answers after 2 s
OUTAGE_S = 2.0
RERUN_AFTER_S = 3.0
LONGDOC = [sys.executable, "-m", "longdoc"]


def make_documents(folder: Path, count: int = DOCUMENTS) -> list[Path]:
    """``count`` short documents of ~3 chunks of 100 tokens, each with its own passkey."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    filler = ("The harbour board met again and discussed the ferry timetable at length. "
              "Members asked about the repairs to the north pier and the winter rates. ")
    paths = []
    for n in range(count):
        parts = [filler * 3 for _ in range(3)]
        parts[rng.randrange(3)] += f"The secret passkey is {rng.randrange(10**5, 10**6)}. "
        path = folder / f"doc-{n:03d}.txt"
        path.write_text(f"Minutes {n}.\n\n" + "\n\n".join(parts))
        paths.append(path)
    return paths


class Faulty:
    """ProtocolModel replies, a seeded 20 % of them replaced by a fault of each kind."""

    KINDS = ("500", "503", "429", "reset", "timeout", "empty", "truncated")

    def __init__(self, share: float = FAULT_SHARE):
        self.model, self.share, self.rng = ProtocolModel(), share, random.Random(SEED)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.calls = 0

    def __call__(self, messages: Messages) -> str | Fault:
        with self.lock:
            self.calls += 1
            kind = self.rng.choice(self.KINDS) if self.rng.random() < self.share else None
            if kind:
                self.injected[kind] += 1
        if kind is None:
            return self.model(messages)
        return {
            "500": Fault(status=500), "503": Fault(status=503),
            "429": Fault(status=429, headers={"Retry-After": "0.2"}),
            "reset": Fault(reset=True), "timeout": Fault(delay_s=2 * TIMEOUT_S, then="late"),
            "empty": "",
            "truncated": Fault(body='{"id": "x", "choices": [{"message": {"content": "Ans'),
        }[kind]


def _outcome(out: Path, ids: list[str]) -> dict:
    """Lost, duplicated, failed and empty-answer counts of a batch output."""
    rows = JsonLog(out, BatchResult).read()
    ok = Counter(r.id for r in rows if r.status == "ok")
    latest_error = {r.id: r for r in rows if r.status == "error"}
    return {
        "ok": len(ok), "lost": sum(1 for i in ids if i not in ok and i not in latest_error),
        "duplicated": sum(n - 1 for n in ok.values()),
        "failed": sorted({i for i in latest_error if i not in ok}),
        "failures_without_reason": sum(1 for r in rows if r.status == "error" and not r.error),
        "empty_answers": sum(1 for r in rows if r.status == "ok" and not r.answer.strip()),
        "errors": sum(r.status == "error" for r in rows),
        "reasons": Counter(" ".join((r.error or "").split()[:9]) for r in rows
                           if r.status == "error").most_common(8),
    }


def faults(retries: int = 3, reruns: int = 5) -> dict:
    """The 100-document batch under 20 % faults and one outage, ``retries`` per call; the
    same command rerun until every document is done (at most ``reruns`` times)."""
    with tempfile.TemporaryDirectory(prefix="longdoc-rel-") as tmp:
        folder = Path(tmp)
        paths = make_documents(folder / "docs")
        ids = [os.path.normpath(p) for p in paths]
        responder = Faulty()
        server = SimServer(responder, latency=LatencyModel(fixed_s=0.02)).start()
        port = server._httpd.server_address[1]
        settings = Settings(backend="openai", base_url=server.base_url, cache_dir=folder / "c",
                            timeout_s=TIMEOUT_S, max_retries=retries, chunk_tokens=100,
                            chunk_overlap=0, embedder="hash", use_cache=False)
        state = {"server": server, "outage": None}

        def outage() -> None:  # the server dies once, a third of the way, and comes back
            while responder.calls < 120:
                time.sleep(0.05)
            state["server"].stop()
            started = time.monotonic()
            time.sleep(OUTAGE_S)
            state["server"] = SimServer(responder, latency=LatencyModel(fixed_s=0.02),
                                        port=port).start()
            state["outage"] = round(time.monotonic() - started, 2)

        killer = threading.Thread(target=outage, daemon=True)
        killer.start()
        out, runs, started = folder / "out.jsonl", [], time.monotonic()
        for _ in range(1 + reruns):
            try:
                summary = run_batch([folder / "docs"], out, task="qa", question=QUESTION,
                                    strategy="mapreduce", jobs=4, settings=settings,
                                    progress=False)
                runs.append(f"ok {summary.ok}, failed {summary.failed}, "
                            f"skipped {summary.skipped}")
            except BackendError as error:
                runs.append(f"stopped: {' '.join(str(error).split()[:9])}")
                time.sleep(RERUN_AFTER_S)  # as a user reruns a stopped batch, not at once
                continue
            if not summary.failed:
                break
        killer.join(timeout=30)
        state["server"].stop()
        result = _outcome(out, ids)
        result.update(retries=retries, documents=len(ids), runs=runs, calls=responder.calls,
                      injected=dict(responder.injected), outage_s=state["outage"],
                      seconds=round(time.monotonic() - started, 1))
        return result


# --- crashes ----------------------------------------------------------------------------------


def _env(server: SimServer, cache: Path) -> dict[str, str]:
    return {**os.environ, "LONGDOC_BACKEND": "openai", "LONGDOC_BASE_URL": server.base_url,
            "LONGDOC_CACHE_DIR": str(cache), "LONGDOC_USE_CACHE": "false",
            "LONGDOC_CHUNK_TOKENS": "100", "LONGDOC_CHUNK_OVERLAP": "0",
            "LONGDOC_EMBEDDER": "hash", "LONGDOC_MAX_RETRIES": "0"}


def _kill_when(command: list[str], env: dict[str, str], cwd: Path,
               ready: Callable[[], bool] = lambda: False, extra_s: float = 0.0) -> int:
    """Run ``command``; SIGKILL it ``extra_s`` after ``ready()`` holds (never: run to the
    end). Its exit code, or -9."""
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while process.poll() is None and not ready():
        time.sleep(0.01)
    if process.poll() is None:
        time.sleep(extra_s)
        process.send_signal(signal.SIGKILL)
    return process.wait()


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def crashes(kills: int = 5) -> dict:
    """SIGKILL a CLI batch ``kills`` times, then finish it; kill and resume a --run-id ask."""
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="longdoc-rel-") as tmp:
        folder = Path(tmp)
        make_documents(folder / "docs")
        server = SimServer(ProtocolModel(), latency=LatencyModel(fixed_s=0.05),
                           max_concurrency=4).start()
        env, out = _env(server, folder / "cache"), folder / "out.jsonl"
        command = [*LONGDOC, "batch", "ask", "docs", "-q", QUESTION, "--strategy",
                   "mapreduce", "--out", str(out), "--json"]
        done_before: list[int] = []
        redone = 0
        for kill in range(kills):
            ok_ids = {r.id for r in JsonLog(out, BatchResult).read() if r.status == "ok"}
            done_before.append(len(ok_ids))
            seen = len(server.requests)
            # Killed at a random moment after a random number of new result lines.
            target = _lines(out) + rng.randint(1, (DOCUMENTS - len(ok_ids)) // (kills - kill))
            _kill_when(command, env, folder, lambda t=target: _lines(out) >= t,
                       rng.uniform(0, 0.3))
            asked = {_doc_of(r) for r in server.requests[seen:]}
            redone += len(asked & {Path(i).stem for i in ok_ids})
        seen = len(server.requests)
        ok_ids = {r.id for r in JsonLog(out, BatchResult).read() if r.status == "ok"}
        final = _kill_when(command, env, folder)
        redone += len({_doc_of(r) for r in server.requests[seen:]} & {Path(i).stem
                                                                        for i in ok_ids})
        rows = JsonLog(out, BatchResult).read()
        lines = out.read_bytes().split(b"\n")
        ok = Counter(r.id for r in rows if r.status == "ok")
        batch = {"kills": kills, "done_before_each_kill": done_before, "final_exit": final,
                 "ok": len(ok), "duplicated": sum(n - 1 for n in ok.values()),
                 "finished_redone": redone,
                 "cut_lines": sum(1 for line in lines if line.strip()) - len(rows)}
        server.stop()
        batch["run_id"] = _run_id_crash(folder, rng)
        return batch


def _doc_of(request: dict) -> str:
    text = request["messages"][-1]["content"]
    start = text.find('name="')
    return Path(text[start + 6:text.find('"', start + 6)]).stem if start >= 0 else "?"


def _run_id_crash(folder: Path, rng: random.Random) -> dict:
    """A map-reduce ask over one long document with --run-id, killed once and resumed."""
    doc = folder / "long.txt"
    filler = "The harbour board met again and discussed the ferry timetable at length. "
    parts = [f"Part {i}. " + filler * 8 for i in range(40)]
    parts[31] += "The secret passkey is 48213. "
    doc.write_text("\n\n".join(parts))
    command = [*LONGDOC, "ask", str(doc), "-q", QUESTION, "--strategy", "mapreduce", "--json"]
    whole = SimServer(ProtocolModel(), latency=LatencyModel(fixed_s=0.1),
                      max_concurrency=2).start()
    _kill_when([*command, "--run-id", "whole"], _env(whole, folder / "c1"), folder)
    uninterrupted = len(whole.requests)
    whole.stop()
    server = SimServer(ProtocolModel(), latency=LatencyModel(fixed_s=0.1),
                       max_concurrency=2).start()
    env = {**_env(server, folder / "c2"), "LONGDOC_CONCURRENCY": "2"}
    kill_at = rng.randint(5, uninterrupted - 5)  # after this many calls, mid-map
    _kill_when([*command, "--run-id", "killed"], env, folder,
               lambda: len(server.requests) >= kill_at, rng.uniform(0, 0.2))
    before = len(server.requests)
    proc = subprocess.run([*command, "--run-id", "killed"], env=env, capture_output=True,
                          text=True, timeout=600)
    answer = json.loads(proc.stdout)["answer"] if proc.returncode == 0 else proc.stderr
    server.stop()
    return {"calls_uninterrupted": uninterrupted, "killed_after_calls": kill_at,
            "calls_before_kill": before, "calls_after_resume": len(server.requests) - before,
            "calls_made_again": len(server.requests) - uninterrupted,
            "exit": proc.returncode, "answer": answer}


# --- bad inputs ---------------------------------------------------------------------------------


def crafted(folder: Path) -> list[Path]:
    """Binary, UTF-16, empty, huge and bomb files."""
    from tests.pdf_bombs import text_bomb

    rng = random.Random(SEED)
    files = {
        "random.txt": bytes(rng.randrange(256) for _ in range(65536)),
        "elf-binary.txt": Path(sys.executable).resolve().read_bytes()[:1 << 20],
        "nul-in-text.md": b"# Notes\n\nall fine until\x00\x00\x00 here\n",
        "utf16-bom.txt": "Grüße aus Köln. The secret passkey is 48213.\n".encode("utf-16"),
        "utf16-no-bom.txt": "The secret passkey is 48213.\n".encode("utf-16-le"),
        "cp1251.txt": ("Секретный пароль: 48213. Это документ на русском языке.\n" * 3)
        .encode("cp1251"),
        "empty.txt": b"",
        "whitespace.txt": b" \n\t\n",
        "empty.pdf": b"",
        "bomb-250k-chars-a-page.pdf": text_bomb(200, 25_000),
        "bomb-6mb-from-33kb.pdf": text_bomb(200, 3_000),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    huge = folder / "huge-250mb.txt"
    with huge.open("wb") as handle:  # sparse: takes no disk
        handle.truncate(250 * 1024 * 1024)
    return [*paths, huge]


def inputs() -> list[dict]:
    """``longdoc extract`` on every PDF we carry and the crafted files."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="longdoc-rel-") as tmp:
        files = [p for folder in PDF_FOLDERS if folder.is_dir()
                 for p in sorted(folder.glob("*.pdf"))]
        for path in [*files, *crafted(Path(tmp))]:
            started = time.monotonic()
            proc = subprocess.run([*LONGDOC, "extract", str(path)], capture_output=True,
                                  timeout=600, env={**os.environ, "LONGDOC_CACHE_DIR": tmp})
            seconds = time.monotonic() - started
            error = proc.stderr.decode(errors="replace").strip().splitlines()
            outcome = (f"{len(proc.stdout.decode(errors='replace')):,} characters"
                       if proc.returncode == 0 else (error[-1] if error else "?"))
            where = "shared" if "shared" in path.parts else ("crafted" if tmp in str(path)
                                                             else "tests/data")
            rows.append({"file": path.name, "from": where, "exit": proc.returncode,
                         "seconds": round(seconds, 2), "outcome": outcome[:300]})
    return rows


# --- report -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", default=["faults", "crashes", "inputs"],
                        choices=["faults", "crashes", "inputs"])
    args = parser.parse_args(argv)
    if "faults" in args.parts:
        print("## faults\n")
        for retries in (3, 0):
            print(json.dumps(faults(retries), indent=1, default=str))
    if "crashes" in args.parts:
        print("\n## crashes\n")
        print(json.dumps(crashes(), indent=1, default=str))
    if "inputs" in args.parts:
        print("\n## inputs\n")
        print("| file | from | exit | seconds | outcome |\n|---|---|---|---|---|")
        for row in inputs():
            print(f"| {row['file']} | {row['from']} | {row['exit']} | {row['seconds']} | "
                  f"{row['outcome'].replace('|', '/')} |")


if __name__ == "__main__":
    main()
