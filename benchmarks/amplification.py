"""Token amplification per strategy: prompt tokens sent / document tokens, on the
simulated server (prompt tokens counted with cl100k, as the document is).

Usage (from the repository root):
    .venv/bin/python -m benchmarks.amplification [--tokens 20000]
        [--strategies mapreduce chain memory] [--chunk-tokens 2000] [--overlap 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from longdoc.pipeline.api import Pipeline
from longdoc.pipeline.settings import Settings
from longdoc.pipeline.simserver import SimServer
from longdoc.pipeline.tokens import count_tokens

HERE = Path(__file__).resolve().parent


def main() -> None:
    from benchmarks.niah import haystack  # the same haystack as the NIAH benchmark

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--strategies", nargs="+", default=["mapreduce", "chain", "memory"])
    parser.add_argument("--chunk-tokens", type=int, default=2000)
    parser.add_argument("--overlap", type=int, default=100)
    args = parser.parse_args()
    text = haystack(args.tokens, "The secret passkey is 48213.", 0.5)
    doc_tokens = count_tokens(text)
    print("| strategy | chunk/overlap | document tokens | prompt tokens | LLM calls | "
          "amplification |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, \
            SimServer(lambda messages: "The secret passkey is 48213.") as server:
        path = Path(tmp) / "haystack.txt"
        path.write_text(text)
        for strategy in args.strategies:
            settings = Settings(backend="openai", base_url=server.base_url, use_cache=False,
                                cache_dir=Path(tmp) / "cache", chunk_tokens=args.chunk_tokens,
                                chunk_overlap=args.overlap)
            with Pipeline(settings) as pipeline:
                answer = pipeline.ask(path, "What is the secret passkey?", strategy=strategy)
            u = answer.usage
            print(f"| {strategy} | {args.chunk_tokens}/{args.overlap} | {doc_tokens} | "
                  f"{u.prompt_tokens} | {u.llm_calls} | {u.prompt_tokens / doc_tokens:.3f} |")


if __name__ == "__main__":
    main()
