"""Needle-in-a-haystack accuracy of a strategy on the embedded model, over real prose.

Usage: .venv/bin/python benchmarks/niah.py [--strategy direct] [--lengths 2000 4000 6000] [--runs 5]
       .venv/bin/python benchmarks/niah.py --lengths 128000 --write-haystack /tmp/h128k.txt
Prints a Markdown table: per length, passkeys found in the answer and with a verified
citation that contains the passkey, plus mean seconds per question.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.ingest import load_document
from longdoc.pipeline.settings import load_settings
from longdoc.pipeline.tokens import encoding

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "inaugural"


def haystack(tokens: int, needle: str, depth: float) -> str:
    """About ``tokens`` cl100k tokens of inaugural addresses with ``needle`` at ``depth``."""
    prose = "\n\n".join(load_document(p).text for p in sorted(DATA.glob("*.txt")))
    enc = encoding()
    ids = enc.encode(prose)[:tokens]
    text = enc.decode(ids)
    cut = text.rfind(". ", 0, int(len(text) * depth)) + 2
    return text[:cut] + needle + " " + text[cut:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 4000, 6000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strategy", default="direct")
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
    with Pipeline(load_settings(use_cache=False)) as pipeline, \
            tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            found = cited = 0
            seconds = []
            for run in range(args.runs):
                key = str(rng.randint(10000, 99999))
                depth = (run + 0.5) / args.runs
                doc = Path(tmp) / f"h{length}-{run}.txt"
                doc.write_text(haystack(length, f"The secret passkey is {key}.", depth))
                started = time.perf_counter()
                answer = pipeline.ask(doc, "What is the secret passkey?",
                                      strategy=args.strategy)
                seconds.append(time.perf_counter() - started)
                found += key in answer.answer
                cited += key in answer.answer and any(key in c.quote for c in answer.citations)
            rows.append((length, found, cited, args.runs, statistics.mean(seconds)))
    print("| strategy | tokens | answer has passkey | + verified citation | s/question |")
    print("|---|---|---|---|---|")
    for length, found, cited, runs, secs in rows:
        print(f"| {args.strategy} | {length} | {found}/{runs} | {cited}/{runs} | {secs:.1f} |")


if __name__ == "__main__":
    main()
