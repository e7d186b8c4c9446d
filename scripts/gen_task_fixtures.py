#!/usr/bin/env python3
"""Generate the task-pipeline parity fixtures (`fixtures/tasks/`) with transformers' pipelines.

Run with the reference environment (../shared/reference/setup.sh):
    ~/deberta-ref/venv/bin/python scripts/gen_task_fixtures.py

What it writes:
* one tiny random DeBERTa-v3-style checkpoint per task (hidden size 8, so the real 128,100-row
  embedding stays small; weights stored f16, outputs computed from the same f16-rounded weights
  in f32) with meaningful labels; every checkpoint uses the real DeBERTa-v3 tokenizer
  (`tokenizer.json` is a copy of the one in crates/deberta-tokenizer/tests/fixtures; git stores
  identical files once, and a real file keeps each fixture directory self-contained);
* `cases.json`: inputs, options and the pipeline outputs.

transformers 5.24 has fill-mask, text-classification, zero-shot-classification and
token-classification pipelines but no longer a question-answering one; QA expectations come
from transformers 4.57.6's `QuestionAnsweringPipeline` (its last release), run in a second
interpreter (`QA_PYTHON`, default /work/qa-venv/bin/python: a venv whose site-packages hold two
.pth files, the 4.57.6 reference venv first and the torch venv second, run with USE_TF=0).
Multiple choice has no pipeline: its expectation is the model's softmax over choices.

transformers 5.24's DebertaV2Tokenizer ignores the normaliser saved in tokenizer.json (it
rebuilds one without sentencepiece's precompiled charsmap), so on NFKC-sensitive text ("…",
"ﬁ", "②", combining marks) its ids differ from tokenizer.json's (which our fast tokenizer and
transformers 4.57 follow). For every case the script records whether the ids agree; where they
do not, `expected` comes from the pipeline run with the tokenizer.json-faithful tokenizer
(`PreTrainedTokenizerFast`) and `expected_hf5_tokenizer` keeps what the 5.24 default gives.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(REPO, "fixtures", "tasks")
TOK_SRC = os.path.join(REPO, "crates", "deberta-tokenizer", "tests", "fixtures", "deberta-v3")
QA_PYTHON = os.environ.get("QA_PYTHON", "/work/qa-venv/bin/python")

BASE = dict(
    vocab_size=128100,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=512,
    relative_attention=True,
    position_buckets=256,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type="p2c|c2p",
    position_biased_input=False,
    type_vocab_size=0,
    max_relative_positions=-1,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    pad_token_id=0,
)
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

# name -> (class, config overrides, tokenizer_config overrides, seed)
MODELS = {
    "fill_mask": ("DebertaV2ForMaskedLM", {}, {}, 1),
    "nli": ("DebertaV2ForSequenceClassification",
            dict(id2label={0: "entailment", 1: "neutral", 2: "contradiction"}), {}, 2),
    "ner": ("DebertaV2ForTokenClassification", dict(id2label=dict(enumerate(NER_LABELS))),
            dict(model_max_length=24), 3),
    "qa": ("DebertaV2ForQuestionAnswering", {}, {}, 4),
    "choice": ("DebertaV2ForMultipleChoice", {}, {}, 5),
}
# Same weights as `nli` (a copy), another config: entailment last, upper case, multi-label.
NLI_ALT = dict(id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"},
               problem_type="multi_label_classification")

UNICODE = "Zoë Ångström moved from Zürich to Kraków in 2019 — naïve café owners cheered."
LONG_NER = ("Angela Merkel met Emmanuel Macron in Berlin on Monday. The European Union and "
            "Siemens AG announced a partnership in München, while Zoë visited the Louvre in Paris "
            "with friends from São Paulo.")
NFKC = "The ﬁrst ② items… were [MASK]."

FILL_MASK = [
    ("The capital of France is [MASK].", {}),
    ("The capital of France is [MASK].", dict(top_k=3)),
    ("Paris is the [MASK] of France, and Berlin is the [MASK] of Germany.", dict(top_k=2)),
    ("I like [MASK] very much.", dict(targets=["▁cats", "▁dogs", "pizza", "▁tea"])),
    ("I like [MASK] very much.", dict(targets=["▁cats", "▁dogs"], top_k=5)),
    ("Zoë lives in [MASK], near Zürich café.", dict(top_k=4)),
    (NFKC, dict(top_k=2)),
]
CLASSIFY = [
    ("A delightful, warm film.", {}),
    ("A delightful, warm film.", dict(top_k=None)),
    ("A delightful, warm film.", dict(top_k=2, function_to_apply="sigmoid")),
    ("A delightful, warm film.", dict(top_k=None, function_to_apply="none")),
    ({"text": "A man is eating.", "text_pair": "Someone eats food."}, dict(top_k=None)),
    ({"text": UNICODE, "text_pair": "Nobody moved."}, {}),
]
CLASSIFY_ALT = [
    ("A delightful, warm film.", dict(top_k=None)),
    ("A delightful, warm film.", dict(top_k=1, function_to_apply="softmax")),
]
ZERO_SHOT = [
    ("The match ended 3-1 after extra time.", dict(candidate_labels=["sports", "politics", "cooking"])),
    ("The match ended 3-1 after extra time.", dict(candidate_labels=["sports", "politics", "cooking"], multi_label=True)),
    ("The match ended 3-1 after extra time.", dict(candidate_labels="sports, politics ,cooking,")),
    ("Parliament voted on the budget.", dict(candidate_labels=["politics"])),
    (UNICODE, dict(candidate_labels=["travel", "food", "music", "finance"], hypothesis_template="Das Thema ist {}.")),
]
ZERO_SHOT_ALT = [
    ("The match ended 3-1 after extra time.", dict(candidate_labels=["sports", "politics", "cooking"])),
    ("The match ended 3-1 after extra time.", dict(candidate_labels=["sports", "politics"], multi_label=True)),
]
NER = [
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="none")),
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="simple")),
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="first")),
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="average")),
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="max")),
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="simple", ignore_labels=[])),
    ("Angela Merkel visited Siemens in Munich.", dict(aggregation_strategy="none", ignore_labels=["O", "B-PER", "I-PER"])),
    (UNICODE, dict(aggregation_strategy="none")),
    (UNICODE, dict(aggregation_strategy="first")),
    (LONG_NER, dict(aggregation_strategy="simple")),
    (LONG_NER, dict(aggregation_strategy="simple", stride=8)),
    (LONG_NER, dict(aggregation_strategy="first", stride=8)),
    (LONG_NER, dict(aggregation_strategy="max", stride=4)),
    (LONG_NER, dict(aggregation_strategy="average", stride=12)),
    ("Tokyo 東京 and 𩸽 fish", dict(aggregation_strategy="simple")),
    (NFKC.replace("[MASK]", "sold"), dict(aggregation_strategy="none")),
]
QA_CONTEXT = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
              "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
              "from 1887 to 1889. Locally nicknamed « La dame de fer », it was the world's tallest "
              "man-made structure until the Chrysler Building in New York City was finished in 1930.")
QA = [
    (dict(question="Who designed the tower?", context="Gustave Eiffel's company designed the tower in Paris."), {}),
    (dict(question="Who designed the tower?", context="Gustave Eiffel's company designed the tower in Paris."), dict(top_k=3)),
    (dict(question="Where is the tower?", context=QA_CONTEXT), dict(top_k=2)),
    (dict(question="Where is the tower?", context=QA_CONTEXT), dict(max_seq_len=48, doc_stride=16, top_k=3)),
    (dict(question="When was it built?", context=QA_CONTEXT), dict(max_seq_len=40, doc_stride=10, max_answer_len=4, top_k=5)),
    (dict(question="What is it called?", context=QA_CONTEXT), dict(max_seq_len=64, doc_stride=20, handle_impossible_answer=True, top_k=2)),
    (dict(question="Wo wohnt Zoë?", context=UNICODE), dict(top_k=3, max_question_len=4)),
    (dict(question="Who?", context="Zoë."), dict(handle_impossible_answer=True)),
]
CHOICE = [
    ("The weather is cold, so I will wear", ["a coat.", "sandals.", "sunscreen."]),
    ("Zoë ordered a café crème in", ["Zürich.", "a swimming pool.", "the mountains of Kraków.", "Paris."]),
]


def tokenizer_files(dst, overrides):
    os.makedirs(dst, exist_ok=True)
    path = os.path.join(dst, "tokenizer.json")
    if os.path.lexists(path):
        os.remove(path)
    shutil.copyfile(os.path.join(TOK_SRC, "tokenizer.json"), path)
    for name in ("special_tokens_map.json", "added_tokens.json"):
        shutil.copy(os.path.join(TOK_SRC, name), os.path.join(dst, name))
    with open(os.path.join(TOK_SRC, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    cfg.update(overrides)
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def informative_init(model, seed):
    """Large random weights (rounded to f16) so that scores are far from ties."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("weight")
                        else 0.2 * torch.randn(p.shape, generator=g))
            elif "word_embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.6 * torch.randn(p.shape, generator=g))
            p.copy_(p.half().float())


def build_models():
    import transformers
    from transformers import DebertaV2Config

    for name, (cls, over, tok_over, seed) in MODELS.items():
        d = os.path.join(OUT, name)
        if "id2label" in over:
            over = dict(over, label2id={v: k for k, v in over["id2label"].items()})
        cfg = DebertaV2Config(**BASE, **over)
        torch.manual_seed(seed)
        model = getattr(transformers, cls)(cfg).eval()
        informative_init(model, seed)
        model.half().save_pretrained(d)
        tokenizer_files(d, tok_over)
    d = os.path.join(OUT, "nli_alt")
    tokenizer_files(d, {})
    with open(os.path.join(OUT, "nli", "config.json")) as f:
        cfg = json.load(f)
    cfg["id2label"] = {str(k): v for k, v in NLI_ALT["id2label"].items()}
    cfg["label2id"] = {v: k for k, v in NLI_ALT["id2label"].items()}
    cfg["problem_type"] = NLI_ALT["problem_type"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    path = os.path.join(d, "model.safetensors")
    if os.path.lexists(path):
        os.remove(path)
    shutil.copyfile(os.path.join(os.path.dirname(d), "nli", "model.safetensors"), path)


def load(name, cls):
    import transformers
    return getattr(transformers, cls).from_pretrained(os.path.join(OUT, name), dtype=torch.float32).eval()


def tokenizers_for(name):
    """(transformers default, tokenizer.json-faithful)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    d = os.path.join(OUT, name)
    return AutoTokenizer.from_pretrained(d), PreTrainedTokenizerFast.from_pretrained(d)


def texts_of(x):
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        return [v for v in x.values() if isinstance(v, str)]
    return [t for v in x for t in texts_of(v)]


def same_ids(toks, texts):
    a, b = toks
    return all(a(t)["input_ids"] == b(t)["input_ids"] for t in texts)


def ids_record(toks, texts):
    """[text, ids of transformers 5.24's tokenizer, ids of tokenizer.json] per text."""
    return [[t, toks[0](t)["input_ids"], toks[1](t)["input_ids"]] for t in dict.fromkeys(texts)]


def plain(x):
    """JSON-able: numpy scalars to Python."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def run_cases(task, model_name, cls, pipe_task, cases, extra_texts=lambda o: []):
    from transformers import pipeline
    model = load(model_name, cls)
    toks = tokenizers_for(model_name)
    pipes = [pipeline(pipe_task, model=model, tokenizer=t, device="cpu") for t in toks]
    out = []
    for inp, opts in cases:
        texts = texts_of(inp) + extra_texts(opts)
        ok = same_ids(toks, texts)
        call = (lambda p: p(inp, **opts))
        case = dict(task=task, model=model_name, input=inp, options=opts, tokenizer_ids_match=ok,
                    ids=ids_record(toks, texts))
        case["expected"] = plain(call(pipes[0] if ok else pipes[1]))
        if not ok:
            case["expected_hf5_tokenizer"] = plain(call(pipes[0]))
        out.append(case)
    return out


def choice_cases():
    model = load("choice", "DebertaV2ForMultipleChoice")
    toks = tokenizers_for("choice")
    out = []
    for prompt, choices in CHOICE:
        ok = same_ids(toks, [prompt] + choices)
        tok = toks[0] if ok else toks[1]
        enc = tok([prompt] * len(choices), choices, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits[0]
        probs = logits.softmax(-1).tolist()
        order = sorted(range(len(choices)), key=lambda i: -probs[i])
        exp = [dict(index=i, choice=choices[i], score=probs[i]) for i in order]
        out.append(dict(task="choice", model="choice", input=dict(prompt=prompt, choices=choices),
                        options={}, tokenizer_ids_match=ok, ids=ids_record(toks, [prompt] + choices),
                        expected=exp))
    return out


def qa_cases():
    """Runs in the transformers 4.57.6 interpreter (`--part qa`)."""
    import transformers
    from transformers import AutoTokenizer, pipeline
    model = load("qa", "DebertaV2ForQuestionAnswering")
    tok = AutoTokenizer.from_pretrained(os.path.join(OUT, "qa"))
    assert tok.is_fast
    ids = lambda inp: [[t, tok(t)["input_ids"], tok(t)["input_ids"]] for t in inp.values()]
    qa = pipeline("question-answering", model=model, tokenizer=tok, device="cpu")
    out = []
    for inp, opts in QA:
        out.append(dict(task="qa", model="qa", input=inp, options=opts, tokenizer_ids_match=True, ids=ids(inp),
                        reference=f"transformers {transformers.__version__} QuestionAnsweringPipeline",
                        expected=plain(qa(**inp, **opts))))
    json.dump(out, sys.stdout)


def main():
    import transformers
    if len(sys.argv) > 2 and sys.argv[1:3] == ["--part", "qa"]:
        return qa_cases()
    os.makedirs(OUT, exist_ok=True)
    build_models()
    cases = []
    cases += run_cases("fill_mask", "fill_mask", "DebertaV2ForMaskedLM", "fill-mask", FILL_MASK,
                       lambda o: [t for t in o.get("targets", []) if not t.startswith("▁")])
    cases += run_cases("classify", "nli", "DebertaV2ForSequenceClassification", "text-classification", CLASSIFY)
    cases += run_cases("classify", "nli_alt", "DebertaV2ForSequenceClassification", "text-classification", CLASSIFY_ALT)
    label_texts = lambda o: [o.get("hypothesis_template", "This example is {}.").format(l) for l in (
        o["candidate_labels"] if isinstance(o["candidate_labels"], list) else o["candidate_labels"].split(","))]
    cases += run_cases("zero_shot", "nli", "DebertaV2ForSequenceClassification", "zero-shot-classification", ZERO_SHOT, label_texts)
    cases += run_cases("zero_shot", "nli_alt", "DebertaV2ForSequenceClassification", "zero-shot-classification", ZERO_SHOT_ALT, label_texts)
    cases += run_cases("ner", "ner", "DebertaV2ForTokenClassification", "token-classification", NER)
    cases += choice_cases()
    env = dict(os.environ, USE_TF="0", USE_FLAX="0", TF_CPP_MIN_LOG_LEVEL="3")
    qa = subprocess.run([QA_PYTHON, os.path.abspath(__file__), "--part", "qa"], env=env,
                        check=True, capture_output=True, text=True)
    cases += json.loads(qa.stdout)
    meta = dict(transformers=transformers.__version__, torch=torch.__version__,
                note="QA from transformers 4.57.6 (5.x has no question-answering pipeline); "
                     "choice from the model's softmax (no pipeline).")
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(dict(meta=meta, cases=cases), f, indent=1, ensure_ascii=False)
    print(f"{len(cases)} cases; tokenizer differences in",
          [i for i, c in enumerate(cases) if not c["tokenizer_ids_match"]])


if __name__ == "__main__":
    main()
