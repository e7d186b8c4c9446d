"""The tokenizer: ``Tokenizer.from_pretrained(path)`` and transformers' call signature."""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from ._deberta_rs import NativeTokenizer

TextInput = Union[str, Sequence[str]]


class BatchEncoding(dict):
    """A dict of encodings (``input_ids``, ``token_type_ids``, ``attention_mask``, ...) whose
    keys also read as attributes, like transformers' ``BatchEncoding``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _load_tokenizer(path: str, fast: Optional[bool]) -> "Tokenizer":
    return Tokenizer.from_pretrained(path, fast=fast)


class Tokenizer:
    """A DeBERTa-v2/v3 tokenizer (``DebertaV2Tokenizer`` / ``DebertaV2TokenizerFast``)."""

    def __init__(self, native: NativeTokenizer, path: str, fast: Optional[bool]) -> None:
        self._native = native
        self._path = path
        self._fast = fast
        self._special = native.special_tokens()

    @classmethod
    def from_pretrained(cls, path: Union[str, "os.PathLike[str]"], fast: Optional[bool] = None) -> "Tokenizer":
        """Loads the tokenizer of a checkpoint directory.

        ``fast=None`` uses ``tokenizer.json`` when the directory has one, else ``spm.model``;
        ``True`` forces the fast tokenizer (``tokenizer.json``, or converted from
        ``spm.model``), ``False`` the slow one (``spm.model``). Raises ``OSError`` when the
        files are missing or malformed.
        """
        path = str(path)
        kind = "auto" if fast is None else ("fast" if fast else "slow")
        return cls(NativeTokenizer(path, kind), path, fast)

    def __reduce__(self):
        return (_load_tokenizer, (self._path, self._fast))

    def __repr__(self) -> str:
        return f"Tokenizer(path={self._path!r}, kind={self._native.kind!r})"

    # -- properties ------------------------------------------------------------------------

    @property
    def name_or_path(self) -> str:
        """The directory it was loaded from."""
        return self._path

    @property
    def is_fast(self) -> bool:
        """Whether this is the fast (``tokenizers``-based) implementation."""
        return self._native.kind == "fast"

    @property
    def model_max_length(self) -> int:
        """``model_max_length`` of ``tokenizer_config.json``."""
        return self._native.model_max_length

    @property
    def padding_side(self) -> str:
        return self._native.padding_side

    @property
    def truncation_side(self) -> str:
        return self._native.truncation_side

    def _token(self, role: str) -> str:
        return self._special[role]

    def _id(self, role: str) -> Optional[int]:
        return self._native.token_to_id(self._special[role])

    cls_token = property(lambda self: self._token("cls_token"))
    sep_token = property(lambda self: self._token("sep_token"))
    pad_token = property(lambda self: self._token("pad_token"))
    unk_token = property(lambda self: self._token("unk_token"))
    mask_token = property(lambda self: self._token("mask_token"))
    cls_token_id = property(lambda self: self._id("cls_token"))
    sep_token_id = property(lambda self: self._id("sep_token"))
    pad_token_id = property(lambda self: self._id("pad_token"))
    unk_token_id = property(lambda self: self._id("unk_token"))
    mask_token_id = property(lambda self: self._id("mask_token"))

    # -- encoding --------------------------------------------------------------------------

    def __call__(
        self,
        text: TextInput,
        text_pair: Optional[TextInput] = None,
        *,
        add_special_tokens: bool = True,
        padding: Union[bool, str] = False,
        truncation: Union[bool, str, None] = None,
        max_length: Optional[int] = None,
        stride: int = 0,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_tensors: Optional[str] = "np",
        return_token_type_ids: bool = True,
        return_attention_mask: bool = True,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_overflowing_tokens: bool = False,
    ) -> BatchEncoding:
        """Encodes one text, a pair, or a batch of texts or pairs.

        Arguments follow transformers: ``padding`` is ``False``/``"do_not_pad"``,
        ``True``/``"longest"`` or ``"max_length"``; ``truncation`` is ``True``/
        ``"longest_first"``, ``"only_first"``, ``"only_second"`` or ``False`` (a
        ``max_length`` without ``truncation`` truncates longest-first, as transformers does
        after its warning). With ``return_tensors="np"`` (the default here) every field is an
        int64 array ``[batch, len]`` (a single text gives ``[1, len]``; rows of different
        lengths need ``padding``); with ``return_tensors=None`` fields are lists, as
        transformers returns them. Tokenization runs without the GIL.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a str or a list of str")
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if not all(isinstance(t, str) for t in pairs):
                raise ValueError("text_pair must be a str or a list of str")
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be 'np' or None, got {return_tensors!r}")

        if truncation is None:
            strategy = "longest_first" if max_length is not None else None
        elif truncation is True:
            strategy = "longest_first"
        elif truncation is False or truncation == "do_not_truncate":
            strategy = None
        elif isinstance(truncation, str):
            strategy = truncation
        else:
            raise ValueError(f"truncation must be a bool or a strategy name, got {truncation!r}")
        limit = max_length if max_length is not None else self.model_max_length
        trunc_len = limit if strategy is not None else None

        if padding is True:
            pad = "longest"
        elif padding is False or padding == "do_not_pad":
            pad = "none"
        elif padding in ("longest", "max_length"):
            pad = padding
        else:
            raise ValueError(
                f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}"
            )
        pad_length = limit if pad == "max_length" else None

        columns = self._native.encode(
            texts,
            pairs,
            add_special_tokens=add_special_tokens,
            max_length=trunc_len,
            strategy=strategy or "longest_first",
            stride=stride,
            padding=pad,
            pad_length=pad_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_offsets=return_offsets_mapping,
            return_overflowing=return_overflowing_tokens,
        )
        keep = {"input_ids"}
        if return_token_type_ids:
            keep.add("token_type_ids")
        if return_attention_mask:
            keep.add("attention_mask")
        if return_special_tokens_mask:
            keep.add("special_tokens_mask")
        if return_offsets_mapping:
            keep.add("offset_mapping")
        if return_overflowing_tokens:
            keep.add("overflow_to_sample_mapping")
        out = BatchEncoding()
        for key, value in columns.items():
            if key not in keep:
                continue
            if key == "overflow_to_sample_mapping":
                out[key] = value if return_tensors == "np" else value.tolist()
            elif return_tensors == "np":
                if isinstance(value, list):
                    raise ValueError(
                        "Unable to create tensor: the encodings have different lengths; "
                        "use padding=True (and/or truncation=True), or return_tensors=None"
                    )
                out[key] = value
            else:
                rows = [np.asarray(r).tolist() for r in value]
                if key == "offset_mapping":
                    rows = [[tuple(p) for p in r] for r in rows]
                out[key] = rows[0] if single and not return_overflowing_tokens else rows
        return out

    def encode(self, text: str, text_pair: Optional[str] = None, **kwargs: Any) -> List[int]:
        """The ids of one text (or pair) as a list."""
        kwargs["return_tensors"] = None
        return self(text, text_pair, **kwargs)["input_ids"]

    def tokenize(self, text: str) -> List[str]:
        """The tokens of ``text``, without special tokens."""
        return self._native.tokenize(text)

    def decode(self, token_ids: Any, skip_special_tokens: bool = False) -> str:
        """Decodes one row of ids (a list, or a 1-D array)."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1).tolist()
        return self._native.decode_batch([ids], skip_special_tokens)[0]

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False) -> List[str]:
        """Decodes each row of ids."""
        rows = [np.asarray(r, dtype=np.int64).reshape(-1).tolist() for r in sequences]
        return self._native.decode_batch(rows, skip_special_tokens)

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]) -> Union[str, List[str]]:
        if isinstance(ids, (int, np.integer)):
            return self._native.convert_ids_to_tokens([int(ids)])[0]
        return self._native.convert_ids_to_tokens([int(i) for i in ids])

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]) -> Union[int, List[int]]:
        """Ids of tokens; a token outside the vocabulary gives the unknown token's id."""
        unk = self.unk_token_id

        def one(t: str) -> int:
            i = self._native.token_to_id(t)
            return unk if i is None else i

        if isinstance(tokens, str):
            return one(tokens)
        return [one(t) for t in tokens]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        return self._native.convert_tokens_to_string(list(tokens))

