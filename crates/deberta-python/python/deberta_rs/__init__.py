"""DeBERTa-v2/v3 inference in Rust (candle), shaped like transformers.

>>> from deberta_rs import pipeline
>>> classify = pipeline("text-classification", model="models/deberta-v3-tiny-sentiment")
>>> classify("What a wonderful, moving film.")
[{'label': 'positive', 'score': 0.9...}]

* :class:`Tokenizer` -- ``Tokenizer.from_pretrained(path)``; ``tok(text, text_pair=None, ...)``
  returns a :class:`BatchEncoding` of numpy arrays; ``tok.decode(ids)``.
* :class:`Model` -- ``Model.from_pretrained(path, head="auto", dtype="f32", threads=None)``;
  ``model(input_ids=..., attention_mask=..., labels=...)`` returns a :class:`ModelOutput` of
  numpy arrays named as transformers' output fields.
* :func:`pipeline` -- ``fill-mask``, ``text-classification``, ``zero-shot-classification``,
  ``token-classification`` (``ner``), ``question-answering`` and ``multiple-choice``, with
  transformers' call signatures and outputs (the values of the ``deberta`` CLI).

Every call that tokenizes or computes releases the GIL, so Python threads run in parallel;
``threads=N`` gives a model or pipeline an intra-op pool of its own. Objects pickle by
reference (path and options), so Ray and Spark can ship them to workers. Errors raise
``ValueError`` (bad input or option), ``OSError`` (missing or malformed files) or
``RuntimeError`` (a failure inside the engine).
"""

from ._deberta_rs import __version__, cpu_features
from ._model import Model, ModelOutput
from ._pipelines import SUPPORTED_TASKS, Pipeline, pipeline
from ._tokenizer import BatchEncoding, Tokenizer

__all__ = [
    "BatchEncoding",
    "Model",
    "ModelOutput",
    "Pipeline",
    "SUPPORTED_TASKS",
    "Tokenizer",
    "__version__",
    "cpu_features",
    "pipeline",
]
