"""Tokenizers, models and pipelines pickle by reference (path and options): small pickles that
load into objects giving the same outputs."""

import pickle

import numpy as np

from conftest import SENTIMENT, TASKS
from deberta_rs import Model, Tokenizer, pipeline


def test_tokenizer_round_trip():
    tok = Tokenizer.from_pretrained(SENTIMENT, fast=False)
    data = pickle.dumps(tok)
    assert len(data) < 1000
    again = pickle.loads(data)
    assert not again.is_fast
    np.testing.assert_array_equal(again("Hello there")["input_ids"], tok("Hello there")["input_ids"])


def test_model_round_trip():
    model = Model.from_pretrained(SENTIMENT, dtype="int8", threads=1)
    data = pickle.dumps(model)
    assert len(data) < 1000
    again = pickle.loads(data)
    assert (again.dtype, again.threads, again.class_name) == ("int8", 1, model.class_name)
    ids = np.array([[1, 1072, 267, 6071, 2]])
    np.testing.assert_array_equal(again(input_ids=ids).logits, model(input_ids=ids).logits)


def test_pipeline_round_trip():
    ner = pipeline("token-classification", model=str(TASKS / "ner"), batch_size=4, aggregation_strategy="simple")
    data = pickle.dumps(ner)
    assert len(data) < 1000
    again = pickle.loads(data)
    assert again.batch_size == 4
    text = "Angela Merkel visited Siemens in Munich."
    assert again(text) == ner(text)
