"""Parity on the committed fixtures: the pipelines give transformers' outputs
(fixtures/tasks/cases.json, scores within 1e-4, as the Rust parity tests), the tokenizer gives
tokenizer.json's ids, the models give transformers' logits and hidden states, and every
pipeline gives exactly the `deberta` CLI's JSON on the same inputs."""

import json
import subprocess

import numpy as np
import pytest

from conftest import FIXTURES, MLM, SENTIMENT, TASKS, cases, max_diff, read_safetensors
from deberta_rs import Model, Tokenizer, pipeline

ATOL = 1e-4

_PIPES = {}


def pipe(task, model):
    key = (task, model)
    if key not in _PIPES:
        _PIPES[key] = pipeline(task, model=str(TASKS / model))
    return _PIPES[key]


def check(task, pipeline_task, call):
    worst = 0.0
    for i, case in enumerate(cases(task)):
        got = call(pipe(pipeline_task, case["model"]), case["input"], dict(case["options"]))
        got = json.loads(json.dumps(got))
        diff = max_diff(got, case["expected"], f"{task}#{i}")
        assert diff <= ATOL, f"{task}#{i}: {diff}\n got {got}\nwant {case['expected']}"
        worst = max(worst, diff)
    print(f"{task}: max score difference {worst:.2e}")


def test_fill_mask():
    check("fill_mask", "fill-mask", lambda p, x, o: p(x, **o))


def test_text_classification():
    def call(p, x, o):
        if isinstance(x, dict):
            return p(x, **o)
        return p(x, **o)

    check("classify", "text-classification", call)


def test_zero_shot():
    check("zero_shot", "zero-shot-classification", lambda p, x, o: p(x, **o))


def test_token_classification():
    check("ner", "token-classification", lambda p, x, o: p(x, **o))


def test_question_answering():
    check("qa", "question-answering", lambda p, x, o: p(question=x["question"], context=x["context"], **o))


def test_multiple_choice():
    check("choice", "multiple-choice", lambda p, x, o: p(prompt=x["prompt"], choices=x["choices"], **o))


def test_lists_match_single_calls():
    p = pipe("text-classification", "nli")
    texts = ["short", "a much longer text than the others, with many tokens", "mid size text"]
    batch = p(texts, top_k=None, batch_size=2)
    assert len(batch) == 3
    for t, b in zip(texts, batch):
        assert max_diff(b, p(t, top_k=None)) < 1e-5
    # transformers' legacy shape: one dict per input of a list, a one-element list for a str.
    legacy = p(texts)
    assert all(isinstance(o, dict) for o in legacy)
    assert isinstance(p("short"), list) and len(p("short")) == 1


def test_tokenizer_ids():
    tok = Tokenizer.from_pretrained(TASKS / "nli")
    n = 0
    for case in json.loads((TASKS / "cases.json").read_text())["cases"]:
        for text, _hf5, json_ids in case["ids"]:
            got = tok(text, return_tensors=None)["input_ids"]
            assert got == json_ids, text
            n += 1
    assert n > 40


def test_tokenizer_slow_and_fast_agree():
    slow = Tokenizer.from_pretrained(SENTIMENT, fast=False)
    fast = Tokenizer.from_pretrained(SENTIMENT, fast=True)
    assert not slow.is_fast and fast.is_fast
    # (Not "Zoë": the slow tokenizer byte-falls-back on `ë` where the fast one gives [UNK], as
    # transformers' two do on this sentencepiece model.)
    texts = ["What a wonderful, moving film.", "Moved from Zurich to Krakow, twice!", "The meeting is on Tuesday."]
    a = slow(texts, padding=True, return_offsets_mapping=True)
    b = fast(texts, padding=True, return_offsets_mapping=True)
    for key in ("input_ids", "attention_mask", "token_type_ids", "offset_mapping"):
        np.testing.assert_array_equal(a[key], b[key])


def test_shipped_models_match_transformers():
    for name in ("deberta-v3-tiny-sentiment", "deberta-v3-tiny-en"):
        fixture = FIXTURES / "shipped" / name
        inp = json.loads((fixture / "input.json").read_text())
        want = read_safetensors(fixture / "expected.safetensors")
        model = Model.from_pretrained(SENTIMENT if "sentiment" in name else MLM)
        out = model(input_ids=np.array(inp["input_ids"]), attention_mask=np.array(inp["attention_mask"]))
        assert out.logits.dtype == np.float32
        key = "logits" if "logits" in want else sorted(want)[0]
        diff = np.abs(out.logits - want[key]).max()
        assert diff < 1e-4, (name, diff)
        if "texts" in inp:
            # The tokenizer gives the ids the fixture ran on.
            tok = Tokenizer.from_pretrained(SENTIMENT)
            enc = tok(inp["texts"], padding=True)
            width = enc["input_ids"].shape[1]
            np.testing.assert_array_equal(enc["input_ids"], np.array(inp["input_ids"])[:, :width])


def test_heads_match_transformers():
    manifest = json.loads((FIXTURES / "heads" / "manifest.json").read_text())
    checked = 0
    for case in manifest["cases"]:
        d = FIXTURES / "heads" / case["name"]
        if "nolabels" not in case["runs"]:
            continue
        inp = json.loads((d / "nolabels.input.json").read_text())
        want = read_safetensors(d / "nolabels.expected.safetensors")
        model = Model.from_pretrained(d, head=case["class"])
        kwargs = {k: np.array(v) for k, v in inp.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = model(**kwargs)
        for key, value in want.items():
            if key in out:
                diff = np.abs(out[key] - value).max()
                assert diff < 1e-4, (case["name"], key, diff)
                checked += 1
    assert checked >= 10


def test_hidden_states_match_transformers():
    d = FIXTURES / "models" / "v3_buckets"
    inp = json.loads((d / "input.json").read_text())
    want = read_safetensors(d / "expected.safetensors")
    model = Model.from_pretrained(d, head="base")
    out = model(
        input_ids=np.array(inp["input_ids"]),
        attention_mask=np.array(inp["attention_mask"]),
        output_hidden_states=True,
        output_attentions=True,
    )
    mask = np.array(inp["attention_mask"])[..., None].astype(bool)
    diff = np.abs(np.where(mask, out.last_hidden_state - want["last_hidden_state"], 0)).max()
    assert diff < 1e-4, diff
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    for i, h in enumerate(out.hidden_states):
        assert np.abs(np.where(mask, h - want[f"hidden_states.{i}"], 0)).max() < 1e-4


# -- the CLI on the same inputs ------------------------------------------------------------

CLI_JOBS = [
    # (CLI command, model dir, JSON lines, pipeline task, call inputs, call kwargs, CLI flags)
    ("classify", SENTIMENT,
     [{"text": "What a wonderful, moving film."}, {"text": "The service was slow and the food was cold."},
      {"text": "A man is eating.", "text_pair": "Someone eats food."}],
     "text-classification", {"top_k": None}, ["--top-k", "all"]),
    ("fill-mask", MLM,
     [{"text": "The capital of France is [MASK]."}, {"text": "I like [MASK] very much."}],
     "fill-mask", {"top_k": 3}, ["--top-k", "3"]),
    ("zero-shot", TASKS / "nli",
     [{"text": "The match ended 3-1 after extra time.", "candidate_labels": ["sports", "politics"]},
      {"text": "Parliament voted on the budget.", "candidate_labels": "politics, cooking"}],
     "zero-shot-classification", {}, []),
    ("ner", TASKS / "ner",
     [{"text": "Angela Merkel visited Siemens in Munich."}, {"text": "Tokyo and Paris are cities."}],
     "token-classification", {"aggregation_strategy": "simple"}, ["--aggregation", "simple"]),
    ("qa", TASKS / "qa",
     [{"question": "Who designed the tower?", "context": "Gustave Eiffel's company designed the tower in 1887."}],
     "question-answering", {"top_k": 2}, ["--top-k", "2"]),
    ("choice", TASKS / "choice",
     [{"prompt": "The weather is cold, so I will wear", "choices": ["a coat.", "sandals."]}],
     "multiple-choice", {}, []),
]


@pytest.mark.parametrize("job", CLI_JOBS, ids=[j[0] for j in CLI_JOBS])
def test_same_as_cli(cli, tmp_path, job):
    command, model, lines, task, kwargs, flags = job
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = subprocess.run(
        [cli, command, "--model", str(model), "--input", str(src), *flags],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    want = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    p = pipeline(task, model=str(model))
    if task == "zero-shot-classification":
        got = [p(line["text"], candidate_labels=line["candidate_labels"]) for line in lines]
    elif task in ("question-answering", "multiple-choice"):
        got = p(lines, **kwargs)
    elif task == "text-classification":
        got = p([dict(line) for line in lines], **kwargs)
    else:
        got = p([line["text"] for line in lines], **kwargs)
    assert got == want
