"""The code-only grounding paths at the sizes longdoc is for: seconds and peak memory of
the whole-document scans that ``verify`` may run after the model has answered.

- ``sentences``: splitting the document into sentences (every scan below starts with it);
- ``firm_value``: an answer whose citations are all weak (a rumoured value) looks for the
  one value stated firmly, over every sentence (``check_answer``);
- ``locate_support``: no quote supports the answer, so its sentence is looked for in code
  (``grounding.best_sentence``);
- ``explanation_spans``: a question that wants an explanation is answered with the
  document's sentences about it (lexical scores over every sentence, the best 50
  re-ranked by MiniLM closeness when ``--meaning``).

The document is ``retrieval_bench.haystack`` (real prose of ``../shared/data``, repeated)
with a plainly stated code planted at depth 0.7 and a rumoured one at 0.3; each size runs
in this process, one after the other, best of ``--repeat`` runs.

    .venv/bin/python -m benchmarks.grounding_scale --tokens 128000 1000000 10000000
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

from benchmarks.retrieval_bench import haystack, plant, text_document
from longdoc.pipeline.citations import CitationVerifier
from longdoc.pipeline.graph import locate_support
from longdoc.pipeline.grounding import answer_key, explanation_spans, firm_value, sentences
from longdoc.pipeline.settings import load_settings
from longdoc.retrieval import question_similarity

FIRM = "The access code for the Quillhaven pumping station is 58213."
RUMOUR = "A rumour had it that the access code for the Quillhaven pumping station was 30417."
QUESTION = "What is the access code for the Quillhaven pumping station?"
WHY = "Why did the government raise tariffs on imported steel?"


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``run``, and its result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - started)
    return best, out


def measure(tokens: int, repeat: int, meaning: bool) -> dict[str, Any]:
    """One size's timings, and whether each scan found what it should."""
    text = plant(plant(haystack(tokens), RUMOUR, 0.3), FIRM, 0.7)
    document = text_document(text, "haystack.txt")
    similar = question_similarity(WHY, load_settings()) if meaning else None
    row: dict[str, Any] = {"tokens": tokens}
    row["sentences_s"], spans = best_of(repeat, lambda: sentences(text))
    row["sentences"] = len(spans)
    key = answer_key("30417", QUESTION)
    row["firm_value_s"], firm = best_of(
        repeat, lambda: firm_value([text], key, QUESTION, [RUMOUR]))
    row["firm_value_ok"] = firm is not None and firm[0] == "58213"
    verifier = CitationVerifier([document])
    row["locate_s"], found = best_of(repeat, lambda: locate_support(verifier, "58213",
                                                                   QUESTION))
    row["locate_ok"] = [c.quote for c in found] == [FIRM]
    row["explain_s"], _ = best_of(
        repeat, lambda: explanation_spans([text], WHY, similar=similar))
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    out = ["| tokens | sentences | split s | firm_value s | right | locate s | right | "
           "explain s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['tokens']:,} | {r['sentences']:,} | {r['sentences_s']:.2f} | "
                   f"{r['firm_value_s']:.2f} | {'yes' if r['firm_value_ok'] else 'NO'} | "
                   f"{r['locate_s']:.2f} | {'yes' if r['locate_ok'] else 'NO'} | "
                   f"{r['explain_s']:.2f} | {r['peak_rss_mb']:,.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--meaning", action="store_true",
                        help="re-rank explanations by MiniLM closeness (loads the embedder)")
    args = parser.parse_args(argv)
    rows = []
    for tokens in args.tokens:
        rows.append(measure(tokens, args.repeat, args.meaning))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
