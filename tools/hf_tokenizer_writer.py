#!/usr/bin/env python3
"""Writes tokenizer.json and tokenizer_config.json for a GGUF model's vocabulary, with the
`tokenizers` package, the way the Hugging Face repositories ship them:

- byte-level BPE (tokenizer.ggml.model "gpt2": SmolLM2, Qwen2/3, Llama 3): a BPE model over
  the byte-level alphabet with the model's merges, the pre-tokenizer its tokenizer.ggml.pre
  names (regex split + ByteLevel), a ByteLevel decoder;
- SentencePiece-style (tokenizer.ggml.model "llama": Llama 2, Mistral, Gemma 3): a BPE model
  with byte fallback whose merges are extracted from the vocabulary and its scores as
  transformers' SentencePieceExtractor does (every split of a piece into two pieces, ordered
  by the piece's score), "▁" for spaces, and the byte-fallback decoder.

Control tokens become special added tokens, user-defined ones non-special added tokens.

  PYTHONPATH=$(tools/python_deps.sh) python3 tools/hf_tokenizer_writer.py MODEL.gguf OUTDIR
"""
import json
import os
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

CONTROL, USER_DEFINED, BYTE = 3, 4, 6

# tokenizer.ggml.pre -> the split regex of the original tokenizer.json (None: ByteLevel's own).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLITS = {"llama-bpe": LLAMA3_SPLIT, "llama3": LLAMA3_SPLIT, "qwen2": QWEN2_SPLIT, "deepseek-r1-qwen": QWEN2_SPLIT}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def byte_level_pre_tokenizer(pre):
    if pre == "smollm":  # digits one by one, then GPT-2's regex
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in SPLITS:
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated", invert=False),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # gpt-2 and the default


def spm_merges(tokens, scores, types):
    """transformers' SentencePieceExtractor: each piece split in two known pieces is a merge,
    merges ordered by the score of the piece they make (ties: by the ids of the halves)."""
    vocab = {t: i for i, t in enumerate(tokens) if types[i] not in (CONTROL, BYTE)}
    merges = []
    for piece, pid in vocab.items():
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges.extend((scores[pid], lr) for lr in local)
    merges.sort(key=lambda m: -m[0])  # stable: ties keep the order above
    return [lr for _, lr in merges]


def build(reader):
    model = field(reader, "tokenizer.ggml.model")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    if model == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=field(reader, "tokenizer.ggml.pre") in ("llama-bpe", "llama3")))
        tok.pre_tokenizer = byte_level_pre_tokenizer(field(reader, "tokenizer.ggml.pre", "default"))
        tok.decoder = decoders.ByteLevel()
    elif model == "llama":
        scores = field(reader, "tokenizer.ggml.scores")
        unk = field(reader, "tokenizer.ggml.unknown_token_id", 0)
        tok = Tokenizer(models.BPE(vocab=vocab, merges=spm_merges(tokens, scores, types), unk_token=tokens[unk],
                                   byte_fallback=True, fuse_unk=True))
        prefix = field(reader, "tokenizer.ggml.add_space_prefix", True)
        replace = normalizers.Replace(" ", "\u2581")
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), replace]) if prefix else replace
        steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        tok.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    else:
        raise SystemExit(f"hf_tokenizer_writer: tokenizer model '{model}' has no tokenizer.json form here")
    added = [AddedToken(tokens[i], special=types[i] == CONTROL, normalized=False)
             for i in range(len(tokens)) if types[i] in (CONTROL, USER_DEFINED)]
    tok.add_tokens(added)
    return tok


def write_tokenizer_files(reader, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tok = build(reader)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    tokens = field(reader, "tokenizer.ggml.tokens")
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key in ("add_bos_token", "add_eos_token"):  # absent: the tokenizer type's default
        if field(reader, f"tokenizer.ggml.{key}") is not None:
            cfg[key] = bool(field(reader, f"tokenizer.ggml.{key}"))
    for key, name in (("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"), ("unknown_token_id", "unk_token"),
                      ("padding_token_id", "pad_token")):
        tid = field(reader, f"tokenizer.ggml.{key}")
        if tid is not None and 0 <= tid < len(tokens):
            cfg[name] = tokens[tid]
    if field(reader, "tokenizer.chat_template") is not None:
        cfg["chat_template"] = field(reader, "tokenizer.chat_template")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    write_tokenizer_files(gguf.GGUFReader(sys.argv[1]), sys.argv[2])
