#!/usr/bin/env python3
"""Reference token ids for tests/tokenize_reference.rs, from the vendors' own Python code.

Reads a corpus JSON file (argv[1]: {"cases": [{"id", "text", "repeat"?}]}) and prints
{"versions": {...}, "tokens": {encoding: {case id: [ids]}}} as JSON on stdout.

- cl100k_base, o200k_base: `tiktoken.get_encoding(name).encode_ordinary(text)`, the official
  pattern and ranks. tiktoken would download the rank files on first use; offline, the caller
  sets TIKTOKEN_CACHE_DIR to a folder holding them under the names tiktoken looks for
  (sha1 of the download URL, see tiktoken/load.py). tiktoken checks each file's sha256 against
  the hash pinned in tiktoken_ext/openai_public.py, so a wrong file fails here, loudly.
- qwen: `dashscope.tokenizers.get_tokenizer("qwen-plus").encode(text)`, the SDK's local Qwen
  tokenizer with its own qwen.tiktoken (NFC, special tokens allowed, long-text chunking).
"""

import json
import sys

import dashscope
import tiktoken
from dashscope.tokenizers import get_tokenizer


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        corpus = json.load(f)
    texts = {c["id"]: c["text"] * c.get("repeat", 1) for c in corpus["cases"]}
    out = {}
    for name in ("cl100k_base", "o200k_base"):
        enc = tiktoken.get_encoding(name)
        out[name] = {k: enc.encode_ordinary(t) for k, t in texts.items()}
    qwen = get_tokenizer("qwen-plus")
    out["qwen"] = {k: list(qwen.encode(t)) for k, t in texts.items()}
    versions = {"tiktoken": tiktoken.__version__, "dashscope": dashscope.__version__}
    json.dump({"versions": versions, "tokens": out}, sys.stdout)


if __name__ == "__main__":
    main()
