"""``longdoc write`` on real documents: length per section, what the checks caught, cost.

Usage: .venv/bin/python -m benchmarks.write [--docs state_union/1961-Kennedy.txt ...]
       [--govreport N] [--words 1500] [--topic "..."] [--out-dir benchmarks/write]

Runs ``longdoc write DOCS --topic T --words N --json --trace --out ARTICLE.md`` in a new
process (its own embedded server unless LONGDOC_BACKEND says otherwise; no response
cache) and prints Markdown tables: words target vs actual per section, the counts (dropped
citations, rewritten and removed sentences, evidence added, conflicts), calls, tokens and
seconds, and the share of each stage. It re-checks the article independently of the run's
own counts: every citation's quote is the source's text at its span, every kept citation
supports its sentence and every figure occurs in a cited sentence of its paragraph.
Documents are paths under ``../shared/data`` (default: three State of the Union addresses);
``--govreport N`` takes the N shortest GovReport reports instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from longdoc.agents.write import (
    ArticleSection,
    Reference,
    check_rendered,
    stage_seconds,
    stage_usage,
)
from longdoc.agents.write_verify import common_words
from longdoc.pipeline.models import Answer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DOCS = ["state_union/1961-Kennedy.txt", "state_union/1962-Kennedy.txt",
                "state_union/1963-Kennedy.txt"]
DEFAULT_TOPIC = "The state of the union in the Kennedy years: economy, defence and welfare"


def govreport_docs(count: int, folder: Path) -> list[Path]:
    lines = [json.loads(line) for line in (SHARED / "govreport" / "gov_report_summ.jsonl").open()]
    chosen = sorted(range(len(lines)), key=lambda i: len(lines[i]["input"]))[:count]
    paths = []
    for index in chosen:
        path = folder / f"govreport-{index}.txt"
        path.write_text(lines[index]["input"])
        paths.append(path)
    return paths


def recheck(article: dict, paths: list[Path]) -> dict[str, int]:
    """The article's checks redone from its JSON: spans against the files, support and
    figures read back from the text (``check_rendered``), sections without a citation."""
    refs = [Reference.model_validate(r) for r in article["references"]]
    sections = [ArticleSection.model_validate(s) for s in article["sections"]]
    texts: dict[str, str] = {}
    bad_spans = 0
    for ref in refs:
        if ref.source not in texts:
            texts[ref.source] = Path(ref.source).read_text()
        bad_spans += texts[ref.source][ref.start:ref.end] != ref.quote
    common = common_words([p.read_text() for p in paths])
    unsupported, untraced_figures = check_rendered(sections, refs, common)
    return {"bad_spans": bad_spans, "unsupported": unsupported, "untraced": untraced_figures,
            "sections_without_citation": sum(not any(p.citations for p in s.paragraphs)
                                             for s in sections),
            "sources_cited": len({r.source for r in refs})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", nargs="*", default=DEFAULT_DOCS)
    parser.add_argument("--govreport", type=int, default=0)
    parser.add_argument("--words", type=int, default=1500)
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/write"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    paths = (govreport_docs(args.govreport, args.out_dir) if args.govreport
             else [SHARED / d for d in args.docs])
    name = "govreport" if args.govreport else "-".join(p.stem for p in paths)
    article_md = args.out_dir / f"{name}-{args.words}.md"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "longdoc", "write", *map(str, paths), "--topic", args.topic,
         "--words", str(args.words), "--json", "--trace", "--out", str(article_md)],
        capture_output=True, text=True, timeout=4 * 3600,
        env={**os.environ, "LONGDOC_USE_CACHE": "false"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"longdoc write failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    article = json.loads(done.stdout)
    (args.out_dir / f"{name}-{args.words}.json").write_text(json.dumps(article, indent=1))
    counts, usage = article["counts"], article["usage"]
    check = recheck(article, paths)

    print(f"Documents: {', '.join(p.name for p in paths)}; topic {args.topic!r}; "
          f"--words {args.words}\n")
    print("| section | target | words | deviation |")
    print("|---|---|---|---|")
    for s in article["sections"]:
        print(f"| {s['title']} | {s['target_words']} | {s['words']} | "
              f"{(s['words'] - s['target_words']) / s['target_words']:+.1%} |")
    print(f"| **total** | {counts['target_words']} | {counts['words']} | "
          f"{(counts['words'] - counts['target_words']) / counts['target_words']:+.1%} |\n")
    rows = [
        ("plan", f"{counts['plan_origin']} ({counts['revisions_accepted']} revision(s) accepted)"),
        ("citation markers offered / naming no evidence",
         f"{counts['citations_offered']} / {counts['citations_invalid']}"),
        ("unsupported citations dropped", counts["citations_unsupported"]),
        ("supporting citations found in code", counts["citations_located"]),
        ("sentences with untraceable figures: rewritten / kept after rewrite / removed",
         f"{counts['sentences_rewritten']} / {counts['rewrites_kept']} / "
         f"{counts['sentences_removed']}"),
        ("sections extended by the model", counts["sections_extended"]),
        ("evidence sentences added / sentences trimmed",
         f"{counts['sentences_from_evidence']} / {counts['sentences_trimmed']}"),
        ("conflicts stated", counts["conflicts"]),
        ("references; sources cited", f"{counts['citations']}; {check['sources_cited']} of "
                                      f"{len(paths)}"),
        ("uncited sentences (no figures)", counts["sentences_uncited"]),
        ("re-check: bad spans / unsupported citations / untraced figures / sections "
         "without citation", f"{check['bad_spans']} / {check['unsupported']} / "
                             f"{check['untraced']} / {check['sections_without_citation']}"),
        ("LLM calls; prompt + completion tokens",
         f"{usage['llm_calls']}; {usage['prompt_tokens']} + {usage['completion_tokens']}"),
        ("seconds (command wall / run)", f"{wall:.0f} / {article['elapsed_s']:.0f}"),
    ]
    print("| measure | value |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    answer = Answer.model_validate(article)
    seconds = stage_seconds(answer.trace)
    by_stage = stage_usage(answer)
    total_s = sum(seconds.values()) or 1
    total_tokens = sum(row["tokens"] for row in by_stage.values()) or 1
    print("\n| stage | seconds | share of time | LLM calls | tokens | share of tokens |")
    print("|---|---|---|---|---|---|")
    for stage in dict.fromkeys([*seconds, *by_stage]):
        row = by_stage.get(stage, {"calls": 0, "tokens": 0})
        calls, tokens = row["calls"], row["tokens"]
        s = seconds.get(stage, 0.0)
        print(f"| {stage} | {s:.0f} | {s / total_s:.0%} | {calls} | {tokens} | "
              f"{tokens / total_tokens:.0%} |")
    print(f"\nArticle: {article_md}", file=sys.stderr)


if __name__ == "__main__":
    main()
