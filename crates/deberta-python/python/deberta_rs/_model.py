"""The model: ``Model.from_pretrained(path, head=..., dtype=..., threads=...)`` on numpy."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ._deberta_rs import NativeModel


class ModelOutput(dict):
    """The outputs of a forward pass (``loss``, ``logits``, ``start_logits``,
    ``end_logits``, ``last_hidden_state``, ``hidden_states``, ``attentions``: those the
    head returned), as a dict whose keys also read as attributes and whose integer indices
    follow ``to_tuple()``, like transformers' ``ModelOutput``."""

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in _FIELDS:
            return None
        raise AttributeError(name)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return dict.__getitem__(self, key)

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(dict.__getitem__(self, k) for k in _FIELDS if k in self)


_FIELDS = (
    "loss",
    "logits",
    "start_logits",
    "end_logits",
    "last_hidden_state",
    "hidden_states",
    "attentions",
)


def _load_model(path: str, head: str, dtype: str, threads: Optional[int]) -> "Model":
    return Model.from_pretrained(path, head=head, dtype=dtype, threads=threads)


def _ids(name: str, value: Any) -> Optional[np.ndarray]:
    if value is None:
        return None
    a = np.asarray(value)
    if a.dtype == np.bool_:
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    # No copy when the array already is C-contiguous int64.
    return np.ascontiguousarray(a, dtype=np.int64)


class Model:
    """A DeBERTa-v2/v3 model with one of transformers' heads, computing on the CPU."""

    def __init__(self, native: NativeModel, path: str, head: str) -> None:
        self._native = native
        self._path = path
        self._head = head
        self._config: Optional[Dict[str, Any]] = None

    @classmethod
    def from_pretrained(
        cls,
        path: Union[str, "os.PathLike[str]"],
        head: str = "auto",
        dtype: str = "f32",
        threads: Optional[int] = None,
    ) -> "Model":
        """Loads a checkpoint directory (or a hub id already in the HuggingFace cache).

        ``head``: ``"auto"`` (config.json's ``architectures``), ``"base"``, ``"masked-lm"``,
        ``"sequence-classification"``, ``"token-classification"``, ``"question-answering"``,
        ``"multiple-choice"``, or transformers' class name. ``dtype``: the compute type of the
        encoder's linear layers, ``"f32"``, ``"bf16"`` (bf16 weights and inputs, f32 sums) or
        ``"int8"`` (dynamic quantisation). ``threads``: an intra-op pool of that many threads
        for this model alone (default: the process-wide pool, all cores), so N models x
        ``threads`` fill the cores without oversubscription.
        """
        path = str(path)
        return cls(NativeModel(path, head, dtype, threads), path, head)

    def __reduce__(self):
        return (_load_model, (self._path, self._head, self.dtype, self.threads))

    def __repr__(self) -> str:
        return (
            f"Model(path={self._path!r}, class={self.class_name}, dtype={self.dtype!r}, "
            f"threads={self.threads})"
        )

    @property
    def name_or_path(self) -> str:
        return self._path

    @property
    def dtype(self) -> str:
        """The compute type of the linear layers (``f32``, ``bf16``, ``int8``)."""
        return self._native.dtype

    @property
    def threads(self) -> Optional[int]:
        """The size of the model's own pool (``None``: the process-wide pool)."""
        return self._native.threads

    @property
    def class_name(self) -> str:
        """transformers' class name of the head."""
        return self._native.class_name

    @property
    def plan(self) -> str:
        """The execution plan (path, kernels, format, threads)."""
        return self._native.plan

    @property
    def config(self) -> Dict[str, Any]:
        """config.json as loaded."""
        if self._config is None:
            self._config = json.loads(self._native.config_json())
        return self._config

    @property
    def id2label(self) -> Dict[int, str]:
        return dict(enumerate(self._native.id2label()))

    @property
    def label2id(self) -> Dict[str, int]:
        return {label: i for i, label in enumerate(self._native.id2label())}

    @property
    def num_labels(self) -> int:
        return len(self._native.id2label())

    def __call__(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        labels: Any = None,
        start_positions: Any = None,
        end_positions: Any = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """One forward pass on numpy arrays (or anything ``np.asarray`` takes).

        ``input_ids``, ``attention_mask``, ``token_type_ids``, ``position_ids``:
        ``[batch, len]`` integers (multiple choice: ``[batch, choices, len]``). ``labels``:
        class ids (int) or, for regression / multi-label / soft labels, floats;
        ``start_positions`` / ``end_positions`` for question answering. Returns float32 arrays
        named as transformers' output fields. Runs without the GIL.
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        int_labels = float_labels = None
        if labels is not None:
            a = np.asarray(labels)
            if a.dtype.kind in "iub":
                int_labels = np.ascontiguousarray(a, dtype=np.int64)
            elif a.dtype.kind == "f":
                float_labels = np.ascontiguousarray(a, dtype=np.float32)
            else:
                raise ValueError(f"labels must be integers or floats, got dtype {a.dtype}")
        out = self._native.forward(
            _ids("input_ids", input_ids),
            attention_mask=_ids("attention_mask", attention_mask),
            token_type_ids=_ids("token_type_ids", token_type_ids),
            position_ids=_ids("position_ids", position_ids),
            labels=int_labels,
            float_labels=float_labels,
            start_positions=_ids("start_positions", start_positions),
            end_positions=_ids("end_positions", end_positions),
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        return ModelOutput((k, out[k]) for k in _FIELDS if k in out)

    forward = __call__
