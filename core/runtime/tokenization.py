"""Tokenisation for the runtime: ``tokenizers`` + numpy only.

Texts are truncated to the model's ``max_length`` and padded per batch (to the
longest row of that batch, never to ``max_length``).  :meth:`BundleTokenizer.batches`
sorts the rows by length first so each batch carries little padding; every batch
says which original rows it holds so callers can put results back in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError, UsageError


@dataclass
class Batch:
    index: np.ndarray               # positions of these rows in the caller's list
    feed: dict[str, np.ndarray]     # ONNX inputs, int64 [rows, longest]
    encodings: list                 # tokenizers.Encoding per row (offsets, special tokens)


class BundleTokenizer:
    """A ``tokenizer.json`` with the bundle's truncation and padding rules."""

    def __init__(self, path: str | Path, *, max_length: int, pad_id: int = 0):
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises plain Exception
            raise BundleError(f"{path} is not a readable tokenizer.json: {e}",
                              hint="re-export the run; the model needs a fast tokenizer") from None
        self.max_length = int(max_length)
        self.pad_id = int(pad_id)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> list:
        return self.encode_checked(check_texts(texts, "texts"), pairs)

    def encode_checked(self, texts: list[str], pairs: list[str] | None = None) -> list:
        """:meth:`encode` for ``texts`` already validated by :func:`check_texts` (pairs are checked)."""
        if pairs is not None:
            pairs = check_texts(pairs, "text_pairs")
            if len(pairs) != len(texts):
                raise UsageError(f"got {len(texts)} texts but {len(pairs)} text_pairs",
                                 hint="give one text_pair per text")
            if len(texts) == 1:
                return [self.tokenizer.encode(texts[0], pairs[0])]
            return self.tokenizer.encode_batch(list(zip(texts, pairs)))
        if len(texts) == 1:
            # one row: encode in this thread; encode_batch would wake the tokenizers'
            # thread pool, whose spinning workers then compete with onnxruntime's
            return [self.tokenizer.encode(texts[0])]
        return self.tokenizer.encode_batch(texts)

    def pad(self, encodings: list, inputs: list[str]) -> dict[str, np.ndarray]:
        """Right-pad to the longest row; only the inputs the graph takes."""
        if len(encodings) == 1:  # the latency path: no padding to do
            e = encodings[0]
            one = {"input_ids": np.array([e.ids], dtype=np.int64),
                   "attention_mask": np.array([e.attention_mask], dtype=np.int64),
                   "token_type_ids": np.array([e.type_ids], dtype=np.int64)}
            return {name: one[name] for name in inputs}
        n, width = len(encodings), max((len(e.ids) for e in encodings), default=0)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encodings):
            k = len(e.ids)
            ids[i, :k], mask[i, :k], types[i, :k] = e.ids, 1, e.type_ids
        all_inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: all_inputs[name] for name in inputs}

    def batches(self, texts: list[str], pairs: list[str] | None, *, inputs: list[str],
                batch_size: int = 32, sort: bool = True) -> list[Batch]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
        encodings = self.encode(texts, pairs)
        if len(encodings) == 1:
            return [Batch(np.zeros(1, dtype=np.intp), self.pad(encodings, inputs), encodings)]
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable") if sort else np.arange(len(encodings))
        out = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            encs = [encodings[i] for i in idx]
            out.append(Batch(idx, self.pad(encs, inputs), encs))
        return out


def check_texts(texts, what: str) -> list[str]:
    if isinstance(texts, str):
        raise UsageError(f"{what} must be a list of strings, got a single string",
                         hint=f"wrap it in a list: [{texts[:30]!r}]")
    try:
        texts = list(texts)
    except TypeError:
        raise UsageError(f"{what} must be a list of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise UsageError(f"{what}[{i}] must be a string, got {type(t).__name__}")
        if not t.isascii():
            check_utf8(t, f"{what}[{i}]")
    return texts


def check_utf8(text: str, what: str) -> str:
    """``text`` if it is valid unicode; a UsageError when it holds undecodable bytes (lone
    surrogates, as Python's ``surrogateescape`` leaves invalid UTF-8 in argv)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UsageError(f"{what} is not valid UTF-8 (undecodable byte at character {e.start})",
                         hint="send UTF-8 text") from None
    return text
