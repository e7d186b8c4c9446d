#!/usr/bin/env python3
"""Train our own DeBERTa-v3-style sentencepiece tokenizer on the pretraining text of mix_pretrain.py.

    ~/deberta-ref/venv457/bin/python scripts/data/train_tokenizer.py
        # -> models/deberta-v3-tiny-tokenizer/

Needs the pinned tokenizer reference environment (the same as scripts/gen_tokenizer_fixtures.py):
transformers==4.57.6 sentencepiece==0.2.3 tokenizers==0.22.2 protobuf, and data/pretrain/tokenizer.txt (mix_pretrain.py: the prose and the review sentences
of the sentiment training split).

The trainer settings copy DeBERTa-v3's spm.model (its trainer_spec, read with the sentencepiece
protobuf) where they make sense at this size: unigram, byte fallback, nmt_nfkc normalisation
(the default charsmap, as v3), dummy prefix, whitespace collapsed, split by script / whitespace /
number, digits not split, pieces up to 32 characters, [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 with
v3's piece names and unk_surface. What differs: 12,000 pieces (v3: 128,000), character coverage
1.0 (v3: 0.999997 on a far larger corpus; the prose has only ~190 distinct characters, and a
character left to byte fallback would be [UNK] in transformers' fast tokenizer, whose
conversion drops byte fallback), sentences up to
8192 bytes (v3: 4192; a paragraph is one sentence here), one thread, and the nmt_nfkc charsmap
is sentencepiece 0.2.3's (v3's was compiled by an older sentencepiece from older Unicode data:
the two normalise 174 code points differently, e.g. U+200D, U+061C, U+32FF and newer scripts).
[MASK] is not an sentencepiece piece: as in v3, transformers adds it after the vocabulary
(id 12000 here, 128000 in v3).

Saves spm.model, tokenizer.json (transformers' DebertaV2TokenizerFast conversion),
tokenizer_config.json, special_tokens_map.json and added_tokens.json.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import sentencepiece as spm
import tokenizers
import transformers
from transformers import DebertaV2Tokenizer, DebertaV2TokenizerFast

PINNED = {"transformers": "4.57.6", "sentencepiece": "0.2.3", "tokenizers": "0.22.2"}
VOCAB_SIZE = 12000

SPM_SETTINGS = dict(
    model_type="unigram",
    vocab_size=VOCAB_SIZE,
    byte_fallback=True,
    normalization_rule_name="nmt_nfkc",
    add_dummy_prefix=True,
    remove_extra_whitespaces=True,
    split_by_unicode_script=True,
    split_by_whitespace=True,
    split_by_number=True,
    split_digits=False,
    treat_whitespace_as_suffix=False,
    max_sentencepiece_length=32,
    max_sentence_length=8192,
    character_coverage=1.0,
    num_sub_iterations=2,
    shrinking_factor=0.75,
    hard_vocab_limit=True,
    vocabulary_output_piece_score=True,
    shuffle_input_sentence=True,
    input_sentence_size=0,
    pad_id=0, pad_piece="[PAD]",
    bos_id=1, bos_piece="[CLS]",
    eos_id=2, eos_piece="[SEP]",
    unk_id=3, unk_piece="[UNK]",
    unk_surface=" \u2047 ",
    self_test_sample_size=0,
    num_threads=1,
    minloglevel=1,
)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default="data/pretrain/tokenizer.txt", help="relative to the repository root")
    ap.add_argument("--out", default=os.path.join(root, "models", "deberta-v3-tiny-tokenizer"))
    args = ap.parse_args()
    versions = {"transformers": transformers.__version__, "sentencepiece": spm.__version__,
                "tokenizers": tokenizers.__version__}
    for k, v in PINNED.items():
        if versions[k] != v:
            sys.exit(f"{k} {versions[k]} != pinned {v} (use the venv described in scripts/data/README.md)")

    # Train from the repository root with relative paths: spm.model records `input` and
    # `model_prefix` in its trainer_spec.
    os.chdir(root)
    if not os.path.exists(args.input):
        sys.exit(f"{args.input} is missing: run scripts/data/mix_pretrain.py first")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(os.path.relpath(tmp, root), "spm")
        spm.SentencePieceTrainer.train(input=args.input, model_prefix=prefix, **SPM_SETTINGS)
        model = prefix + ".model"
        # Blank the temporary prefix so the file is the same from run to run.
        from sentencepiece import sentencepiece_model_pb2 as pb
        m = pb.ModelProto()
        with open(model, "rb") as f:
            m.ParseFromString(f.read())
        m.trainer_spec.model_prefix = "spm"
        with open(model, "wb") as f:
            f.write(m.SerializeToString())

        shutil.rmtree(args.out, ignore_errors=True)
        os.makedirs(args.out)
        # clean_up_tokenization_spaces as in v3's tokenizer_config.json
        slow = DebertaV2Tokenizer(model, clean_up_tokenization_spaces=True)
        slow.save_pretrained(args.out)
    # No tokenizer.json yet: transformers converts spm.model (DebertaV2Converter).
    fast = DebertaV2TokenizerFast.from_pretrained(args.out)
    fast.save_pretrained(args.out)

    slow = DebertaV2Tokenizer.from_pretrained(args.out)
    fast = DebertaV2TokenizerFast.from_pretrained(args.out)
    ids = {t: slow.convert_tokens_to_ids(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")}
    want = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": VOCAB_SIZE}
    if ids != want or {t: fast.convert_tokens_to_ids(t) for t in want} != want:
        sys.exit(f"special ids {ids} != {want}")
    files = sorted(os.listdir(args.out))
    print(f"saved {args.out}: {files}; len(slow)={len(slow)} len(fast)={len(fast)}; specials {ids}")
    for f in files:
        print(f"  {f}: {os.path.getsize(os.path.join(args.out, f))} bytes sha256 {sha256(os.path.join(args.out, f))}")
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
