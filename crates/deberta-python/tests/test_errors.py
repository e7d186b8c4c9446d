"""Errors reach Python as ValueError (bad input or option) or OSError (files), with the
engine's messages; nothing panics through."""

import numpy as np
import pytest

from conftest import SENTIMENT, TASKS
from deberta_rs import Model, Tokenizer, pipeline


def test_missing_directory_is_oserror(tmp_path):
    with pytest.raises(OSError, match="no tokenizer files"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(OSError):
        Model.from_pretrained(tmp_path)
    with pytest.raises(OSError):
        pipeline("text-classification", model=str(tmp_path / "absent"))


def test_malformed_config_is_oserror(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(OSError, match="config.json"):
        Model.from_pretrained(tmp_path)


def test_bad_options_are_valueerror():
    with pytest.raises(ValueError, match="dtype"):
        Model.from_pretrained(SENTIMENT, dtype="f64")
    with pytest.raises(ValueError, match="unknown head"):
        Model.from_pretrained(SENTIMENT, head="nonsense")
    with pytest.raises(ValueError, match="threads"):
        Model.from_pretrained(SENTIMENT, threads=0)
    with pytest.raises(ValueError, match="unknown task"):
        pipeline("summarization", model=str(SENTIMENT))
    with pytest.raises(ValueError, match="unknown option"):
        pipeline("text-classification", model=str(SENTIMENT), aggregation_strategy="simple")
    clf = pipeline("text-classification", model=str(SENTIMENT))
    with pytest.raises(ValueError, match="function_to_apply"):
        clf("fine", function_to_apply="tanh")
    ner = pipeline("token-classification", model=str(TASKS / "ner"))
    with pytest.raises(ValueError, match="aggregation_strategy"):
        ner("Angela Merkel", aggregation_strategy="median")


def test_bad_inputs_are_valueerror_with_our_message():
    clf = pipeline("text-classification", model=str(SENTIMENT))
    with pytest.raises(ValueError, match=r"invalid `text`: is empty"):
        clf("   ")
    with pytest.raises(ValueError, match=r"input 1: invalid `text`: is empty"):
        clf(["fine", ""])
    fill = pipeline("fill-mask", model=str(TASKS / "fill_mask"))
    with pytest.raises(ValueError, match="MASK|mask"):
        fill("no mask token here")
    zs = pipeline("zero-shot-classification", model=str(TASKS / "nli"))
    with pytest.raises(ValueError, match="candidate_labels"):
        zs("some text")


def test_model_input_errors_are_valueerror():
    model = Model.from_pretrained(SENTIMENT)
    with pytest.raises(ValueError, match="out of range"):
        model(input_ids=np.array([[1, -5, 2]]))
    with pytest.raises(ValueError):
        model(input_ids=np.array([1, 2, 3]))  # not [batch, len]
    with pytest.raises(ValueError, match="integers"):
        model(input_ids=np.array([[1.5, 2.0]]))
    with pytest.raises(ValueError):
        model(input_ids=np.array([[1, 2, 3]]), attention_mask=np.array([[1, 1]]))
    with pytest.raises(ValueError):
        model(input_ids=np.array([[1, 2, 3]]), start_positions=np.array([0]), end_positions=np.array([1]))


def test_ids_beyond_the_vocabulary_raise_not_panic():
    model = Model.from_pretrained(SENTIMENT)
    with pytest.raises((ValueError, RuntimeError)) as info:
        model(input_ids=np.array([[1, 10_000_000, 2]]))
    assert "panic" not in str(info.value).lower() or "caught" in str(info.value)


def test_tokenizer_errors():
    tok = Tokenizer.from_pretrained(SENTIMENT)
    with pytest.raises(ValueError, match="padding"):
        tok("x", padding="sideways")
    with pytest.raises(ValueError, match="Unable to create tensor"):
        tok(["short", "a much longer sentence"])
    with pytest.raises(ValueError, match="truncation strategy"):
        tok("x", truncation="middle", max_length=4)
    with pytest.raises(ValueError):
        tok.decode([-1])
