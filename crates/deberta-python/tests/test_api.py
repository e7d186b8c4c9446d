"""The transformers-shaped API: encodings, decoding, model outputs and losses, pipeline
input forms."""

import json

import numpy as np

from conftest import FIXTURES, SENTIMENT, TASKS, read_safetensors
from deberta_rs import Model, ModelOutput, Tokenizer, pipeline


def test_encoding_shapes_and_options():
    tok = Tokenizer.from_pretrained(SENTIMENT)
    one = tok("Hello world")
    assert one["input_ids"].dtype == np.int64 and one["input_ids"].shape[0] == 1
    assert one.input_ids[0, 0] == tok.cls_token_id and one.input_ids[0, -1] == tok.sep_token_id
    assert set(one) == {"input_ids", "token_type_ids", "attention_mask"}
    batch = tok(["a", "a much longer text"], padding=True, return_offsets_mapping=True)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["offset_mapping"].shape == batch["input_ids"].shape + (2,)
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    assert (batch["input_ids"][0][batch["attention_mask"][0] == 0] == tok.pad_token_id).all()
    cut = tok("a much longer text than that", truncation=True, max_length=5)
    assert cut["input_ids"].shape == (1, 5)
    padded = tok("a", padding="max_length", max_length=12)
    assert padded["input_ids"].shape == (1, 12)
    pair = tok("first", "second")
    assert pair["token_type_ids"].max() == 1
    lists = tok(["a", "bb cc"], return_tensors=None)
    assert isinstance(lists["input_ids"], list) and isinstance(lists["input_ids"][0], list)
    windows = tok("one two three four five six seven eight", truncation=True, max_length=6, stride=2,
                  return_overflowing_tokens=True, padding=True)
    assert windows["input_ids"].shape[0] > 1
    assert (windows["overflow_to_sample_mapping"] == 0).all()


def test_decode_and_tokens():
    tok = Tokenizer.from_pretrained(SENTIMENT)
    text = "The meeting is on Tuesday."
    ids = tok(text)["input_ids"][0]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.batch_decode([ids, ids], skip_special_tokens=True) == [text, text]
    tokens = tok.tokenize(text)
    assert tok.convert_tokens_to_ids(tokens) == list(ids[1:-1])
    assert tok.convert_ids_to_tokens(list(ids[1:-1])) == tokens
    assert tok.convert_tokens_to_string(tokens) == text
    assert tok.encode(text) == list(ids)


def test_model_outputs_and_loss():
    model = Model.from_pretrained(SENTIMENT)
    assert model.class_name == "DebertaV2ForSequenceClassification"
    assert model.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    tok = Tokenizer.from_pretrained(SENTIMENT)
    enc = tok(["I absolutely loved it!", "The food was cold."], padding=True)
    out = model(**enc, labels=np.array([2, 0]))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 3) and out.loss.shape == ()
    # loss = mean cross-entropy of the logits
    z = out.logits - out.logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    assert abs(float(out.loss) - float(-(logp[0, 2] + logp[1, 0]) / 2)) < 1e-5
    assert out[0] is out.loss and out.to_tuple()[1] is out.logits
    assert out.start_logits is None


def test_heads_losses_match_transformers():
    d = FIXTURES / "heads" / "seq_v3"
    inp = json.loads((d / "labels_negative_dropped.input.json").read_text())
    want = read_safetensors(d / "labels_negative_dropped.expected.safetensors")
    model = Model.from_pretrained(d)
    out = model(**{k: np.array(v) for k, v in inp.items()})
    assert abs(float(out.loss) - float(np.asarray(want["loss"]).reshape(-1)[0])) < 1e-4


def test_bf16_and_int8_close_to_f32():
    tok = Tokenizer.from_pretrained(SENTIMENT)
    enc = tok(["What a wonderful, moving film.", "The food was cold."], padding=True)
    ref = Model.from_pretrained(SENTIMENT)(**enc).logits
    for dtype in ("bf16", "int8"):
        got = Model.from_pretrained(SENTIMENT, dtype=dtype)(**enc).logits
        assert np.abs(got - ref).max() < 0.1, dtype


def test_pipeline_input_forms():
    qa = pipeline("question-answering", model=str(TASKS / "qa"))
    q, c = "Who designed the tower?", "Gustave Eiffel's company designed the tower."
    one = qa(question=q, context=c)
    assert set(one) == {"score", "start", "end", "answer"}
    assert qa({"question": q, "context": c}) == one
    assert qa(q, c) == one
    assert qa([{"question": q, "context": c}] * 2) == [one, one]
    assert qa(question=[q, q], context=c) == [one, one]
    mc = pipeline("multiple-choice", model=str(TASKS / "choice"))
    ranked = mc(prompt="It is cold, so I wear", choices=["a coat.", "sandals."])
    assert sorted(r["index"] for r in ranked) == [0, 1]
    zs = pipeline("zero-shot-classification", model=str(TASKS / "nli"), candidate_labels=["a", "b"])
    assert zs("text")["labels"] and zs(["x", "y"], ["c", "d", "e"])[1]["labels"].__len__() == 3
    fill = pipeline("fill-mask", model=str(TASKS / "fill_mask"), top_k=2)
    assert len(fill("Paris is the [MASK] of France.")) == 2
    assert len(fill(["a [MASK].", "b [MASK]."])) == 2
