"""Needle-in-a-haystack accuracy of a strategy on the embedded model, over real prose.

Usage: .venv/bin/python benchmarks/niah.py [--strategy direct] [--lengths 2000 4000 6000] [--runs 5]
       .venv/bin/python benchmarks/niah.py --strategy mapreduce --lengths 20000 --runs 10 --cli
       .venv/bin/python benchmarks/niah.py --lengths 128000 --write-haystack /tmp/h128k.txt
Prints a Markdown table: per length, passkeys found in the answer and with a verified
citation that contains the passkey, plus mean seconds per question. ``--cli`` asks through
``longdoc ask --strategy S --json --trace`` (a new process and embedded server per question)
instead of the Python API, varies the haystack text per run (it starts at a different
address) and prints one line per run with the chunk records the reducer rejected.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.settings import load_settings
from longdoc.pipeline.tokens import encoding

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "inaugural"


def haystack(tokens: int, needle: str, depth: float, first_file: int = 0) -> str:
    """About ``tokens`` cl100k tokens of inaugural addresses with ``needle`` at ``depth``.

    The text starts at the ``first_file``-th address (in name order, wrapping around).
    """
    files = sorted(DATA.glob("*.txt"))
    files = files[first_file % len(files):] + files[:first_file % len(files)]
    prose = "\n\n".join(load_document(p).text for p in files)
    enc = encoding()
    ids = enc.encode(prose)[:tokens]
    text = enc.decode(ids)
    cut = text.rfind(". ", 0, int(len(text) * depth)) + 2
    return text[:cut] + needle + " " + text[cut:]


def ask_cli(doc: Path, question: str, strategy: str) -> dict:
    """``longdoc ask --json --trace`` in a new process; its JSON (or the error)."""
    done = subprocess.run(
        [sys.executable, "-m", "longdoc", "ask", str(doc), "-q", question,
         "--strategy", strategy, "--json", "--trace"],
        capture_output=True, text=True, timeout=3600,
        env={**os.environ, "LONGDOC_USE_CACHE": "false"})
    if done.returncode != 0:
        return {"answer": f"error {done.returncode}: {done.stderr.strip()}", "citations": [],
                "trace": []}
    return json.loads(done.stdout)


def rejected(result: dict) -> str:
    """From the reduce step's trace: records demoted (an answer not verified), verified,
    and passages re-read by the second look."""
    for event in result.get("trace", []):
        data = event.get("data", {})
        if "demoted" in data and "verified" in data:
            looked = data.get("passages_reread", 0)
            return (f"{data['demoted']} demoted, {data['verified']} verified"
                    + (f", second look at {looked} passage(s)" if looked else ""))
    return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 4000, 6000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strategy", default="direct")
    parser.add_argument("--first-run", type=int, default=0,
                        help="skip the runs before this one (their keys and depths are the "
                             "same as in a full run), e.g. to finish an interrupted run")
    parser.add_argument("--cli", action="store_true",
                        help="ask through `longdoc ask --json` and vary the text per run")
    parser.add_argument("--write-haystack", type=Path, metavar="PATH",
                        help="only write one haystack (first --lengths value, depth 0.5, "
                             "passkey 48213) to PATH and exit")
    args = parser.parse_args()
    if args.write_haystack:
        args.write_haystack.write_text(
            haystack(args.lengths[0], "The secret passkey is 48213.", 0.5))
        return
    rng = random.Random(7)
    rows = []
    question = "What is the secret passkey?"
    serving = contextlib.nullcontext() if args.cli else Pipeline(load_settings(use_cache=False))
    with serving as pipeline, tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            found = cited = 0
            seconds = []
            for run in range(args.runs):
                key = str(rng.randint(10000, 99999))
                depth = (run + 0.5) / args.runs
                if run < args.first_run:
                    continue
                doc = Path(tmp) / f"h{length}-{run}.txt"
                first = 7 * run if args.cli else 0
                doc.write_text(haystack(length, f"The secret passkey is {key}.", depth, first))
                started = time.perf_counter()
                if args.cli:
                    result = ask_cli(doc, question, args.strategy)
                    text, quotes = result["answer"], [c["quote"] for c in result["citations"]]
                else:
                    answer = pipeline.ask(doc, question, strategy=args.strategy)
                    text, quotes = answer.answer, [c.quote for c in answer.citations]
                seconds.append(time.perf_counter() - started)
                hit = key in text
                good = hit and any(key in q for q in quotes)
                found += hit
                cited += good
                if args.cli:
                    print(f"run {run}: depth {depth:.2f}, key {key}, first file {first}: "
                          f"{'cited' if good else 'found' if hit else 'MISSED'}; "
                          f"{rejected(result)}; {seconds[-1]:.0f} s; answer {text[:80]!r}",
                          flush=True)
            rows.append((length, found, cited, len(seconds), statistics.mean(seconds)))
    print("| strategy | tokens | answer has passkey | + verified citation | s/question |")
    print("|---|---|---|---|---|")
    for length, found, cited, runs, secs in rows:
        print(f"| {args.strategy} | {length} | {found}/{runs} | {cited}/{runs} | {secs:.1f} |")


if __name__ == "__main__":
    main()
