#!/usr/bin/env python3
"""Converts DeepSeek's `tokenizer.json` (Hugging Face format) into the two files llmux ships.

usage: deepseek_vocab.py TOKENIZER_JSON OUT_DIR

- `deepseek.tiktoken`: the BPE vocabulary as `base64(bytes) id` lines, one per mergeable token,
  in id order. The token strings of `tokenizer.json` are in the GPT-2 byte-level alphabet; they
  are mapped back to the bytes they stand for. Every merge of `model.merges` produces a token
  whose id is higher than the ids of all earlier merges' tokens, so ranking pairs by the id of
  the merged token (tiktoken's rule) picks the same merge as the merge list does.
- `deepseek-added.tsv`: the added tokens as `id<TAB>normalized<TAB>content` lines (`normalized`
  is 0 or 1: which of the two passes of the Hugging Face tokenizer matches the token).

The script refuses a tokenizer.json whose shape differs from what llmux reproduces.
"""

import base64
import json
import sys
from pathlib import Path


def byte_alphabet() -> dict:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(src.read_text(encoding="utf-8"))
    model = data["model"]
    assert model["type"] == "BPE" and not model.get("byte_fallback") and model.get("dropout") is None
    assert data["normalizer"] in (None, {"type": "Sequence", "normalizers": []})
    added = data["added_tokens"]
    added_ids = {a["id"] for a in added}
    for a in added:
        assert not (a["lstrip"] or a["rstrip"] or a["single_word"]), a
    to_byte = byte_alphabet()
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    made = [model["vocab"][a + b] for a, b in merges]
    assert all(x < y for x, y in zip(made, made[1:])), "merge order differs from id order"
    lines = []
    for token, i in vocab:
        if i in added_ids:
            continue
        raw = bytes(to_byte[ch] for ch in token)
        lines.append(f"{base64.b64encode(raw).decode()} {i}\n")
    (out / "deepseek.tiktoken").write_text("".join(lines), encoding="ascii")
    rows = [f"{a['id']}\t{int(a['normalized'])}\t{a['content']}\n" for a in sorted(added, key=lambda a: a["id"])]
    assert all("\t" not in a["content"] and "\n" not in a["content"] for a in added)
    (out / "deepseek-added.tsv").write_text("".join(rows), encoding="utf-8")


if __name__ == "__main__":
    main()
