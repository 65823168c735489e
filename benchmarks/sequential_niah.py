"""Needle and two-hop accuracy of the sequential strategies (chain, memory) on the
embedded model, over ~20,000 tokens of real prose from ../shared/data.

Usage: .venv/bin/python benchmarks/sequential_niah.py [--strategies chain memory]
       [--tokens 20000] [--runs 10] [--hop-runs 10] [--chunk-tokens 2000] [--first-run N]

Needle: "The secret passkey is NNNNN." at depth (i+0.5)/runs in run i; question "What is
the secret passkey?". Two-hop: "The entry code of the Marlow vault is the room number of
Edith Crane." early and "Edith Crane sleeps in room NNNN of the east wing." about half the
document later; question "What is the entry code of the Marlow vault?". A run counts as
cited only if the answer holds the value and a verified citation (a quote located in the
source) contains it. Each finished run prints one line; the Markdown table comes last.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.settings import load_settings
from longdoc.pipeline.tokens import encoding

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "inaugural"
NEEDLE_QUESTION = "What is the secret passkey?"
HOP_QUESTION = "What is the entry code of the Marlow vault?"


def prose(tokens: int) -> str:
    """About ``tokens`` cl100k tokens of inaugural addresses."""
    text = "\n\n".join(load_document(p).text for p in sorted(DATA.glob("*.txt")))
    enc = encoding()
    return enc.decode(enc.encode(text)[:tokens])


def insert(text: str, sentences: list[tuple[float, str]]) -> str:
    """``text`` with each sentence put at a sentence boundary near its depth."""
    for depth, sentence in sorted(sentences, reverse=True):
        cut = text.rfind(". ", 0, int(len(text) * depth)) + 2
        text = text[:cut] + sentence + " " + text[cut:]
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategies", nargs="+", default=["chain", "memory"])
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hop-runs", type=int, default=10)
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--first-run", type=int, default=0,
                        help="skip the runs before this one (their keys and positions are "
                             "the same as in a full run), e.g. to finish an interrupted run")
    args = parser.parse_args()
    rng = random.Random(11)
    base = prose(args.tokens)
    cases = []
    for run in range(args.runs):
        key = str(rng.randint(10000, 99999))
        depth = (run + 0.5) / args.runs
        cases.append(("needle", run, key, NEEDLE_QUESTION,
                      insert(base, [(depth, f"The secret passkey is {key}.")]), f"{depth:.2f}"))
    for run in range(args.hop_runs):
        key = str(rng.randint(1000, 9999))
        first = 0.05 + 0.4 * run / max(1, args.hop_runs)
        second = first + 0.5
        cases.append(("two-hop", run, key, HOP_QUESTION, insert(base, [
            (first, "The entry code of the Marlow vault is the room number of Edith Crane."),
            (second, f"Edith Crane sleeps in room {key} of the east wing.")]),
            f"{first:.2f}+{second:.2f}"))
    results: dict[tuple[str, str], list[tuple[bool, bool, float]]] = {}
    settings = load_settings(use_cache=False, chunk_tokens=args.chunk_tokens)
    with Pipeline(settings) as pipeline, tempfile.TemporaryDirectory() as tmp:
        for kind, run, key, question, text, where in cases:
            if run < args.first_run:
                continue
            doc = Path(tmp) / f"{kind}-{run}.txt"
            doc.write_text(text)
            for strategy in args.strategies:
                started = time.perf_counter()
                answer = pipeline.ask(doc, question, strategy=strategy)
                seconds = time.perf_counter() - started
                found = key in answer.answer
                cited = found and any(key in c.quote for c in answer.citations)
                results.setdefault((strategy, kind), []).append((found, cited, seconds))
                print(f"{strategy} {kind} run {run} depth {where} key {key}: "
                      f"answer {answer.answer[:80]!r} found={found} cited={cited} "
                      f"{seconds:.0f}s {answer.usage.llm_calls} calls", flush=True)
    print()
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`  ({args.tokens} tokens, "
          f"chunk_tokens {args.chunk_tokens})")
    print()
    print("| strategy | case | runs | answer has value | + verified citation | s/question |")
    print("|---|---|---|---|---|---|")
    for (strategy, kind), rows in results.items():
        n = len(rows)
        print(f"| {strategy} | {kind} | {n} | {sum(r[0] for r in rows)}/{n} | "
              f"{sum(r[1] for r in rows)}/{n} | {statistics.mean(r[2] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
