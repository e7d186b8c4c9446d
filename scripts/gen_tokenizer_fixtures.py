#!/usr/bin/env python3
"""Generate tokenizer parity fixtures for crates/deberta-tokenizer.

Run with the pinned reference environment:
    transformers==4.57.6  sentencepiece==0.2.3  tokenizers==0.22.2  protobuf
    python scripts/gen_tokenizer_fixtures.py

Writes (deterministically) into crates/deberta-tokenizer/tests/fixtures/:
  models/<name>/            small sentencepiece models trained here + transformers' saved
                            tokenizer_config.json / special_tokens_map.json (no tokenizer.json:
                            the Rust fast path must convert spm.model itself, like transformers)
  expected/<name>.json      slow (DebertaV2Tokenizer) and fast (DebertaV2TokenizerFast) outputs
                            for the corpus, raw sentencepiece pieces with byte offsets, pairs with
                            every truncation strategy / stride / padding, batches, decodes.
The real DeBERTa-v3 files are read from tests/fixtures/deberta-v3/ (copied there once), and the
project's own tokenizer from models/deberta-v3-tiny-tokenizer/ (made by
scripts/data/train_tokenizer.py; case `deberta-v3-tiny`, read in place, not copied).

    python scripts/gen_tokenizer_fixtures.py --only deberta-v3-tiny   # regenerate one case
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import sentencepiece as spm
import tokenizers
import transformers
from transformers import DebertaV2Tokenizer, DebertaV2TokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "deberta-tokenizer", "tests", "fixtures")
ROOT = os.path.normpath(ROOT)
# Shipped tokenizers checked in place (name -> directory).
SHIPPED = {
    "deberta-v3-tiny": os.path.normpath(os.path.join(ROOT, "..", "..", "..", "..", "models", "deberta-v3-tiny-tokenizer")),
}

PINNED = {"transformers": "4.57.6", "sentencepiece": "0.2.3", "tokenizers": "0.22.2"}
VERSIONS = {
    "python": sys.version.split()[0],
    "transformers": transformers.__version__,
    "sentencepiece": spm.__version__,
    "tokenizers": tokenizers.__version__,
}
for k, v in PINNED.items():
    if VERSIONS[k] != v:
        sys.exit(f"{k} {VERSIONS[k]} != pinned {v}")

BASE = [
    "",
    " ",
    "Hello world!",
    "This is a test",
    "I was born in 92000, and this is falsé.",
    "Café naïve résumé façade Ångström",
    "Привет, как дела? Ёжик в тумане.",
    "Καλημέρα κόσμε, ΣΊΣΥΦΟΣ ς",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया, क्या हाल है?",
    "สวัสดีชาวโลก",
    "你好，世界！我们在北京。",
    "日本語のテキストです。カタカナ",
    "안녕하세요 세계",
    "Emoji 😀👍🏽 and ZWJ 👩\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈",
    "combining e\u0301 vs é, A\u030a, \u1ea6 \u1ea6",
    "non-NFC: A\u0308\u0301 \ufb01 ligature \ufb00 ½ ㎏ ℌ",
    "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ　１２３",
    "missing 𩸽 Ϻ Šœ Ugljšić dấu nặng ꙮ 𓀀",
    "many    spaces   here",
    "tabs\tand\nnewlines\r\nmixed",
    "ctrl\x00\x01\x1f\x7f chars",
    "  leading and trailing  ",
    "\n\t  \n",
    "Hello [MASK] world",
    "[CLS] already [SEP] special [PAD] [UNK]",
    "[MASK][MASK]x[MASK]",
    "lower [mask] not special",
    "…",
    "İs th!s 𩸽 Ϻ Šœ Ugljšić dấu nặng",
    "Wondering how this will get tokenized 🤔 ?",
    "don't can't won't it's I'm we've they're",
    "punct!!! ??? ... ,,, ;;; (a) [b] {c} \"q\" 'x' «guillemets» —dash– ¿¡",
    "numbers 1234567890 3.14159 1,000,000 $5 €10 £3",
    "URL https://example.com/a?b=c&d=e#f email a.b@c.de",
    "\u200b zero\u200bwidth \ufeff bom \u00a0nbsp",
    "ÀÉÎÕÜ ß ẞ ŉ ǅ",
    "<mytok> user <mytok>defined",
]
LONG = " ".join(BASE[2:])
CORPUS = BASE + [LONG]
# ~12k characters; recorded (ids, and fast offsets) for the real DeBERTa-v3 files only.
VERY_LONG = "\n".join([LONG] * 8)

CONTEXT = (
    "The Amazon rainforest covers much of the Amazon basin of South America. This basin encompasses "
    "7,000,000 square kilometres, of which 5,500,000 are covered by the rainforest. Москва — столица России. "
    "東京は日本の首都です。"
)
PAIRS = [
    ("Which name is also used to describe the Amazon rainforest in English?", CONTEXT),
    ("short", "short too"),
    ("Привет, как дела?", "你好，世界！"),
    ("", "nonempty second"),
    (LONG[:200], LONG[200:300]),
]
TRUNCATIONS = [
    dict(truncation="longest_first", max_length=16, stride=0),
    dict(truncation="longest_first", max_length=16, stride=4),
    dict(truncation="longest_first", max_length=40, stride=5, truncation_side="left"),
    dict(truncation="only_first", max_length=20, stride=3),
    dict(truncation="only_second", max_length=24, stride=6),
    dict(truncation="only_second", max_length=32, stride=8, padding="max_length"),
    dict(truncation="only_second", max_length=32, stride=4, padding="longest", pad_to_multiple_of=8, padding_side="left"),
    dict(truncation="longest_first", max_length=7, stride=0),
    dict(truncation="longest_first", max_length=12, stride=2, add_special_tokens=False),
    dict(truncation="only_second", max_length=10, stride=0, add_special_tokens=False, padding="max_length"),
]
MAX_WINDOWS = 6
SINGLE_TRUNCATIONS = [
    dict(truncation="longest_first", max_length=8, stride=2),
    dict(truncation="only_first", max_length=12, stride=0, padding="max_length"),
    dict(truncation="longest_first", max_length=12, stride=3, truncation_side="left", padding_side="left",
         padding="longest", pad_to_multiple_of=4),
]
BATCH = [BASE[2], BASE[6], BASE[15]]


def train_corpus(path):
    words = []
    for t in BASE:
        words.extend(t.split())
    lines = []
    for i in range(400):
        k = (i * 7919) % len(words)
        lines.append(" ".join(words[(k + j * 13) % len(words)] for j in range(12)))
    lines.extend(BASE * 3)
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.replace("\n", " ") + "\n")


MODELS = {
    "unigram-lower": dict(spm=dict(model_type="unigram", vocab_size=700, byte_fallback=True), cfg=dict(do_lower_case=True)),
    "unigram-punct": dict(spm=dict(model_type="unigram", vocab_size=700, byte_fallback=True), cfg=dict(split_by_punct=True)),
    "bpe": dict(spm=dict(model_type="bpe", vocab_size=500, byte_fallback=False, normalization_rule_name="identity"), cfg={}),
    "unigram-nobyte": dict(
        spm=dict(model_type="unigram", vocab_size=400, byte_fallback=False, user_defined_symbols=["<mytok>"]), cfg={}
    ),
}


def train_models(tmp):
    # Train with relative paths: trainer_spec records `input` and `model_prefix` in spm.model,
    # and a random temp directory name would make the files differ from run to run.
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        train_corpus("corpus.txt")
        _train_all(tmp)
    finally:
        os.chdir(cwd)


def _train_all(tmp):
    corpus = "corpus.txt"
    for name, spec in MODELS.items():
        out = os.path.join(ROOT, "models", name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        prefix = name
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, num_threads=1, hard_vocab_limit=False,
            pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]",
            unk_id=3, unk_piece="[UNK]", character_coverage=0.98, minloglevel=2, **spec["spm"],
        )
        slow = DebertaV2Tokenizer(prefix + ".model", **spec["cfg"])
        slow.save_pretrained(out)
        for extra in ("added_tokens.json",):
            p = os.path.join(out, extra)
            if os.path.exists(p):
                os.remove(p)


def case_kwargs(c):
    kw = dict(c)
    for k in ("truncation_side", "padding_side"):
        kw.pop(k, None)
    return kw


def set_sides(tok, c):
    tok.truncation_side = c.get("truncation_side", "right")
    tok.padding_side = c.get("padding_side", "right")


def fields(enc, i=None, fast=True):
    keys = ["input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"]
    if fast:
        keys += ["offset_mapping"]
    out = {}
    for k in keys:
        v = enc[k] if i is None else enc[k][i]
        out[k] = [list(x) for x in v] if k == "offset_mapping" else list(v)
    return out


def encode_case(tok, a, b, c, fast):
    set_sides(tok, c)
    kw = case_kwargs(c)
    try:
        if fast:
            enc = tok(a, b, return_overflowing_tokens=True, return_offsets_mapping=True,
                      return_special_tokens_mask=True, **kw)
            n = len(enc["input_ids"])
            # Pairs where both sides overflow give a cross product of windows: keep the first ones.
            return {"windows": [fields(enc, i) for i in range(min(n, MAX_WINDOWS))], "n_windows": n,
                    "overflow_to_sample_mapping": list(enc["overflow_to_sample_mapping"])}
        enc = tok(a, b, return_special_tokens_mask=True, **kw)
        return {"windows": [fields(enc, fast=False)]}
    except BaseException as e:  # noqa: BLE001 - recorded (tokenizers panics are BaseException)
        return {"error": f"{type(e).__name__}: {str(e)[:80]}"}
    finally:
        set_sides(tok, {})


def per_text(tok, text, fast):
    ids = tok(text)["input_ids"]
    row = {
        "text": text,
        "tokens": tok.tokenize(text),
        "ids": ids,
        "decoded_skip": tok.decode(ids, skip_special_tokens=True),
        "decoded": tok.decode(ids),
    }
    if fast:
        enc = tok(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        row["offsets"] = [list(x) for x in enc["offset_mapping"]]
        row["word_ids"] = enc.word_ids()
        row["special_tokens_mask"] = enc["special_tokens_mask"]
    else:
        row["special_mask_already"] = tok.get_special_tokens_mask(ids, already_has_special_tokens=True)
    return row


def spm_rows(model_path, texts):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    rows = []
    for t in texts:
        proto = sp.encode(t, out_type="proto")
        pieces = [[p.piece, p.id, p.begin, p.end] for p in proto.pieces]
        rows.append({"text": t, "pieces": pieces, "decoded": sp.decode_pieces([p[0] for p in pieces])})
    return rows


def run_model(name, slow_dir, fast_dir):
    slow = DebertaV2Tokenizer.from_pretrained(slow_dir)
    fast = DebertaV2TokenizerFast.from_pretrained(fast_dir)
    texts = CORPUS
    out = {"versions": VERSIONS, "name": name, "slow": [], "fast": [], "pairs": [], "singles": [], "batch": {}}
    for t in texts:
        out["slow"].append(per_text(slow, t, False))
        out["fast"].append(per_text(fast, t, True))
    out["spm"] = spm_rows(os.path.join(slow_dir, "spm.model"), texts)
    for a, b in PAIRS:
        for c in TRUNCATIONS:
            out["pairs"].append({"a": a, "b": b, "case": c, "slow": encode_case(slow, a, b, c, False),
                                 "fast": encode_case(fast, a, b, c, True)})
    for t in [BASE[4], BASE[15], LONG[:300], ""]:
        for c in SINGLE_TRUNCATIONS:
            out["singles"].append({"a": t, "case": c, "slow": encode_case(slow, t, None, c, False),
                                   "fast": encode_case(fast, t, None, c, True)})
    for label, tok, is_fast in (("slow", slow, False), ("fast", fast, True)):
        enc = tok(BATCH, padding="longest", pad_to_multiple_of=8, return_special_tokens_mask=True)
        out["batch"][label] = [fields(enc, i, fast=False) for i in range(len(BATCH))]
    if name == "deberta-v3":
        enc = fast(VERY_LONG, return_offsets_mapping=True)
        out["very_long"] = {"text": VERY_LONG, "slow_ids": slow(VERY_LONG)["input_ids"],
                            "fast_ids": enc["input_ids"], "fast_offsets": [list(x) for x in enc["offset_mapping"]]}
    out["slow_fast_differ"] = [
        {"text": s["text"], "slow": s["tokens"], "fast": f["tokens"]}
        for s, f in zip(out["slow"], out["fast"]) if s["ids"] != f["ids"]
    ]
    path = os.path.join(ROOT, "expected", f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    print(f"{name}: {len(texts)} texts, slow/fast differ on {len(out['slow_fast_differ'])}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["deberta-v3", *MODELS, *SHIPPED],
                    help="regenerate this case only (the trained fixture models are retrained only for all)")
    args = ap.parse_args()
    os.makedirs(os.path.join(ROOT, "expected"), exist_ok=True)
    if args.only is None:
        with tempfile.TemporaryDirectory() as tmp:
            train_models(tmp)
    v3 = os.path.join(ROOT, "deberta-v3")
    if args.only in (None, "deberta-v3"):
        run_model("deberta-v3", v3, v3)
    for name in MODELS:
        if args.only in (None, name):
            d = os.path.join(ROOT, "models", name)
            run_model(name, d, d)
    for name, d in SHIPPED.items():
        if args.only in (None, name):
            run_model(name, d, d)
    with open(os.path.join(ROOT, "expected", "VERSIONS.json"), "w") as f:
        json.dump(VERSIONS, f, indent=1, sort_keys=True)
    print(json.dumps(VERSIONS))


if __name__ == "__main__":
    main()
