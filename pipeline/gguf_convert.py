"""Convert a GGUF chat model into a Hugging Face folder (bfloat16) that vLLM can load.

Run as a script by the vLLM environment's python, which need not have longdoc installed
(only the standard library is imported at the top):

    python gguf_convert.py MODEL.gguf OUT_DIR

It needs ``torch``, ``transformers``, ``gguf`` and ``accelerate``. vLLM 0.32 cannot load
GGUF files itself; transformers de-quantizes them on load.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(gguf: Path, out: Path) -> None:
    """Write ``gguf``'s tokenizer, config and weights (bfloat16, safetensors) to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights are plain tensors once loaded; drop the markers that would make
    # save_pretrained (and vLLM) treat the folder as a GGUF-quantized checkpoint.
    model.hf_quantizer = None  # type: ignore[assignment]
    for holder in (model, model.config):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    if getattr(model, "is_quantized", False):
        model.is_quantized = False  # type: ignore[assignment]
    model.config.dtype = torch.bfloat16
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python gguf_convert.py MODEL.gguf OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
