"""``pipeline(task, model=path, **options)``: transformers' task pipelines on our engine.

The work is done by the ``deberta-tasks`` crate, the code the ``deberta`` CLI runs, so the
outputs are the CLI's, value for value.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from ._deberta_rs import NativePipeline

#: The task names ``pipeline`` accepts (``ner`` is an alias of ``token-classification``).
SUPPORTED_TASKS = (
    "fill-mask",
    "text-classification",
    "zero-shot-classification",
    "token-classification",
    "ner",
    "question-answering",
    "multiple-choice",
)

# Call options each task takes (as keyword arguments of the call, or as defaults given to
# `pipeline`).
_CALL_OPTIONS = {
    "fill-mask": {"top_k", "targets"},
    "text-classification": {"top_k", "function_to_apply"},
    "zero-shot-classification": {"candidate_labels", "hypothesis_template", "multi_label"},
    "token-classification": {"aggregation_strategy", "ignore_labels", "stride"},
    "question-answering": {
        "top_k",
        "doc_stride",
        "max_answer_len",
        "max_seq_len",
        "max_question_len",
        "handle_impossible_answer",
        "align_to_words",
    },
    "multiple-choice": set(),
}
_CALL_OPTIONS["ner"] = _CALL_OPTIONS["token-classification"]

_SETUP = ("batch_size", "max_length", "dtype", "threads", "tokenizer", "fast")


def _load_pipeline(task: str, model: str, setup: Dict[str, Any], defaults: Dict[str, Any]) -> "Pipeline":
    return pipeline(task, model=model, **setup, **defaults)


def pipeline(
    task: str,
    model: Union[str, "os.PathLike[str]", None] = None,
    *,
    batch_size: int = 8,
    max_length: Optional[int] = None,
    dtype: str = "f32",
    threads: Optional[int] = None,
    tokenizer: Union[str, "os.PathLike[str]", None] = None,
    fast: Optional[bool] = None,
    **defaults: Any,
) -> "Pipeline":
    """Loads the ``task`` pipeline over the checkpoint directory ``model`` (or a hub id
    already in the HuggingFace cache).

    ``batch_size``: rows per forward pass (inputs are sorted by length and padded per batch).
    ``max_length``: truncate inputs to this many tokens (question answering: the window
    length; token classification and zero-shot: instead of the tokenizer's
    ``model_max_length``). ``dtype``: ``"f32"``, ``"bf16"`` or ``"int8"`` linear layers.
    ``threads``: an intra-op pool of its own (default: all cores). ``tokenizer``: another
    directory to load the tokenizer from; ``fast``: as ``Tokenizer.from_pretrained``. Other
    keyword arguments are defaults of the call options (``top_k``, ``aggregation_strategy``,
    ``candidate_labels``, ...).
    """
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"unknown task {task!r} (expected one of {', '.join(SUPPORTED_TASKS)})")
    if model is None:
        raise ValueError("pipeline needs model= (a checkpoint directory)")
    unknown = set(defaults) - _CALL_OPTIONS[task]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(sorted(unknown))} for {task} (pipeline options: "
            f"{', '.join(_SETUP)}; call options: {', '.join(sorted(_CALL_OPTIONS[task])) or 'none'})"
        )
    setup = {
        "batch_size": batch_size,
        "max_length": max_length,
        "dtype": dtype,
        "threads": threads,
        "tokenizer": None if tokenizer is None else str(tokenizer),
        "fast": fast,
    }
    return Pipeline(task, str(model), setup, defaults)


class Pipeline:
    """A task pipeline; call it like transformers' pipeline of the same name."""

    def __init__(self, task: str, model: str, setup: Dict[str, Any], defaults: Dict[str, Any]) -> None:
        native_setup = {k: v for k, v in setup.items() if k != "fast"}
        fast = setup.get("fast")
        native_setup["tokenizer_kind"] = "auto" if fast is None else ("fast" if fast else "slow")
        self._native = NativePipeline(task, model, json.dumps(native_setup))
        self.task = task
        self.model = model
        self._setup = dict(setup)
        self._defaults = dict(defaults)

    def __reduce__(self):
        return (_load_pipeline, (self.task, self.model, self._setup, self._defaults))

    def __repr__(self) -> str:
        return f"Pipeline(task={self.task!r}, model={self.model!r}, batch_size={self.batch_size})"

    @property
    def batch_size(self) -> int:
        return self._native.batch_size

    @property
    def plan(self) -> str:
        """The execution plan (path, kernels, format, threads)."""
        return self._native.plan

    @property
    def id2label(self) -> Dict[int, str]:
        return dict(enumerate(self._native.id2label()))

    def _run(self, inputs: List[Any], options: Dict[str, Any], batch_size: Optional[int]) -> List[Any]:
        out = self._native.run(json.dumps(inputs), json.dumps(options), batch_size)
        return json.loads(out)

    def _options(self, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        options = dict(self._defaults)
        options.update(kwargs)
        unknown = set(options) - _CALL_OPTIONS[self.task]
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(sorted(unknown))} for {self.task} "
                f"(expected: {', '.join(sorted(_CALL_OPTIONS[self.task])) or 'none'})"
            )
        return options

    def __call__(self, *args: Any, batch_size: Optional[int] = None, **kwargs: Any) -> Any:
        """Runs the pipeline on one input or a list of inputs (a list gives a list of
        outputs). ``batch_size`` overrides the pipeline's for this call. Raises
        ``ValueError`` naming the first input that fails."""
        handler = getattr(self, "_call_" + self.task.replace("-", "_"))
        return handler(args, kwargs, batch_size)

    # -- one handler per task --------------------------------------------------------------

    def _call_fill_mask(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], batch_size: Optional[int]) -> Any:
        inputs, single = _texts(_first(args, kwargs, "inputs"))
        options = self._options(kwargs)
        if isinstance(options.get("targets"), str):
            options["targets"] = [options["targets"]]
        if options.get("top_k", 5) is None:
            options.pop("top_k")
        out = self._run(inputs, options, batch_size)
        return out[0] if single else out

    def _call_text_classification(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], batch_size: Optional[int]) -> Any:
        raw = _first(args, kwargs, "inputs")
        text_pair = kwargs.pop("text_pair", None)
        options = self._options(kwargs)
        legacy = "top_k" not in options
        if legacy:
            options["top_k"] = "legacy"
        elif options["top_k"] is None:
            options["top_k"] = "all"
        single = isinstance(raw, (str, dict))
        items = [raw] if single else list(raw)
        inputs = []
        for item in items:
            if isinstance(item, str):
                inputs.append({"text": item, "text_pair": text_pair})
            elif isinstance(item, dict):
                inputs.append({"text": item.get("text"), "text_pair": item.get("text_pair")})
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                inputs.append({"text": item[0], "text_pair": item[1]})
            else:
                raise ValueError(
                    "text-classification takes a str, a {'text', 'text_pair'} dict, or a list of them"
                )
        out = self._run(inputs, options, batch_size)
        if single:
            return out[0]
        if legacy:
            # transformers: the legacy single-label shape is one dict per input of a list.
            return [o[0] if isinstance(o, list) and len(o) == 1 else o for o in out]
        return out

    def _call_zero_shot_classification(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], batch_size: Optional[int]) -> Any:
        sequences = _first(args, kwargs, "sequences")
        if len(args) > 1:
            kwargs["candidate_labels"] = args[1]
        options = self._options(kwargs)
        labels = options.pop("candidate_labels", None)
        if labels is None:
            raise ValueError("zero-shot-classification needs candidate_labels")
        texts, single = _texts(sequences)
        inputs = [{"text": t, "candidate_labels": labels} for t in texts]
        if options.get("hypothesis_template") is None:
            options.pop("hypothesis_template", None)
        out = self._run(inputs, options, batch_size)
        return out[0] if single else out

    def _call_token_classification(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], batch_size: Optional[int]) -> Any:
        inputs, single = _texts(_first(args, kwargs, "inputs"))
        options = self._options(kwargs)
        if options.get("aggregation_strategy") is None:
            options.pop("aggregation_strategy", None)
        out = self._run(inputs, options, batch_size)
        return out[0] if single else out

    _call_ner = _call_token_classification

    def _call_question_answering(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], batch_size: Optional[int]) -> Any:
        question = kwargs.pop("question", None)
        context = kwargs.pop("context", None)
        if len(args) == 2:
            question, context = args
        elif len(args) == 1:
            raw = args[0]
            single = isinstance(raw, dict)
            items = [raw] if single else list(raw)
            inputs = [_qa_item(i) for i in items]
            return self._finish(inputs, kwargs, batch_size, single)
        elif len(args) > 2:
            raise ValueError("question-answering takes (question, context), a dict, or a list of dicts")
        if question is None or context is None:
            raise ValueError("question-answering needs question= and context=")
        if isinstance(question, str) and isinstance(context, str):
            return self._finish([{"question": question, "context": context}], kwargs, batch_size, True)
        questions = [question] * len(context) if isinstance(question, str) else list(question)
        contexts = [context] * len(questions) if isinstance(context, str) else list(context)
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts")
        inputs = [{"question": q, "context": c} for q, c in zip(questions, contexts)]
        return self._finish(inputs, kwargs, batch_size, False)

    def _call_multiple_choice(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], batch_size: Optional[int]) -> Any:
        prompt = kwargs.pop("prompt", None)
        choices = kwargs.pop("choices", None)
        if len(args) == 2:
            prompt, choices = args
        elif len(args) == 1:
            raw = args[0]
            single = isinstance(raw, dict)
            items = [raw] if single else list(raw)
            inputs = []
            for item in items:
                if not isinstance(item, dict) or "prompt" not in item or "choices" not in item:
                    raise ValueError("multiple-choice takes {'prompt': str, 'choices': [str, ...]} dicts")
                inputs.append({"prompt": item["prompt"], "choices": list(item["choices"])})
            return self._finish(inputs, kwargs, batch_size, single)
        if prompt is None or choices is None:
            raise ValueError("multiple-choice needs prompt= and choices=")
        return self._finish([{"prompt": prompt, "choices": list(choices)}], kwargs, batch_size, True)

    def _finish(self, inputs: List[Any], kwargs: Dict[str, Any], batch_size: Optional[int], single: bool) -> Any:
        out = self._run(inputs, self._options(kwargs), batch_size)
        return out[0] if single else out


def _first(args: Tuple[Any, ...], kwargs: Dict[str, Any], name: str) -> Any:
    if args:
        return args[0]
    if name in kwargs:
        return kwargs.pop(name)
    raise ValueError(f"missing the input ({name})")


def _texts(value: Any) -> Tuple[List[str], bool]:
    if isinstance(value, str):
        return [value], True
    try:
        texts = list(value)
    except TypeError:
        raise ValueError(f"expected a str or a list of str, got {type(value).__name__}") from None
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("expected a str or a list of str")
    return texts, False


def _qa_item(item: Any) -> Dict[str, str]:
    if not isinstance(item, dict) or "question" not in item or "context" not in item:
        raise ValueError("question-answering takes {'question': str, 'context': str} dicts")
    return {"question": item["question"], "context": item["context"]}
