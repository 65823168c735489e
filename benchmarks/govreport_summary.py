"""Summaries of real long reports on the embedded model, with every citation checked.

Usage: .venv/bin/python benchmarks/govreport_summary.py [--reports 1] [--words 200]
       [--strategy mapreduce]

Takes the shortest ``--reports`` reports of ``../shared/data/govreport/gov_report_summ.jsonl``,
runs ``longdoc summarize REPORT --json --trace`` on each (a new process and embedded server,
no response cache) and prints, per report: whether it completed, its paragraphs, how many
paragraphs carry a citation, how many of the summary's sentences the source supports (by the
reducer's trace), and whether every citation's quote equals the report's text at its span.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "govreport"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--strategy", default="mapreduce")
    args = parser.parse_args()
    lines = [json.loads(line) for line in (DATA / "gov_report_summ.jsonl").open()]
    chosen = sorted(range(len(lines)), key=lambda i: len(lines[i]["input"]))[:args.reports]
    print("| report (line) | chars | completed | paragraphs | cited paragraphs | "
          "supported sentences | citations | all verify | LLM calls | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for index in chosen:
            text = lines[index]["input"]
            doc = Path(tmp) / f"govreport-{index}.txt"
            doc.write_text(text)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "longdoc", "summarize", str(doc), "--words",
                 str(args.words), "--strategy", args.strategy, "--json", "--trace"],
                capture_output=True, text=True, timeout=7200,
                env={**os.environ, "LONGDOC_USE_CACHE": "false"})
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                print(f"| {index} | {len(text)} | no: {done.stderr.strip()[:80]} "
                      "| - | - | - | - | - | - | - |")
                continue
            result = json.loads(done.stdout)
            paragraphs = result["answer"].split("\n\n")
            citations = result["citations"]
            cited = {c["paragraph"] for c in citations}
            exact = all(text[c["start"]:c["end"]] == c["quote"] for c in citations)
            checks = [p for e in result["trace"] if "paragraphs" in e.get("data", {})
                      for p in e["data"]["paragraphs"] if "sentences" in p]
            supported = (f"{sum(p['sentences_supported'] for p in checks)}/"
                         f"{sum(p['sentences'] for p in checks)}" if checks else "-")
            print(f"| {index} | {len(text)} | yes | {len(paragraphs)} | {len(cited)} | "
                  f"{supported} | {len(citations)} | {'yes' if exact else 'NO'} | "
                  f"{result['usage']['llm_calls']} | {seconds:.0f} |", flush=True)
            print(f"\nSummary of report {index}:\n{result['answer']}\n", file=sys.stderr)


if __name__ == "__main__":
    main()
