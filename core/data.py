"""The data layer: read CSV, TSV, JSON Lines and Parquet files into validated examples.

Every problem with a data file is a :class:`~tuneforge.errors.DataError` that names the
file and the 1-based line (``data.csv:7: empty text in column 'text'``).  Line numbers are
physical lines: for CSV the header is line 1 and a record with a quoted multi-line field
is reported at the line where it starts; for Parquet the "line" is the row index + 1.
Files are streamed, never read into memory whole.  With ``encoding="utf-8"`` (the
default) a leading byte-order mark is skipped, as Excel writes one.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any, overload

from .errors import ConfigError, DataError
from .runinfo import sha256_file

__all__ = ["SUPPORTED_FORMATS", "LABEL_KINDS", "ColumnMap", "Example", "Dataset", "LabelMap",
           "iter_records", "load_dataset", "stratified_split", "file_sha256"]

SUPPORTED_FORMATS = ("csv", "tsv", "jsonl", "parquet")
LABEL_KINDS = ("single", "multi", "score", "tags", "none")

StrPath = str | os.PathLike[str]
Record = dict[str, Any]

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".json-lines": "jsonl", ".parquet": "parquet"}
_ENCODING_HINT = "pass --encoding with the file's encoding, e.g. --encoding latin-1"


@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds what.  ``label=None`` means unlabelled (prediction) data."""

    text: str = "text"
    label: str | None = "label"
    text_pair: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        roles = self.to_dict()
        for role, name in roles.items():
            if (name is not None or role == "text") and not (isinstance(name, str) and name):
                raise ConfigError(f"column for {role!r} must be a non-empty string, got {name!r}")
        used = [name for name in roles.values() if name is not None]
        if len(set(used)) != len(used):
            raise ConfigError(f"each role needs its own column, got {roles}")

    @classmethod
    def from_dict(cls, d: Mapping[str, str | None]) -> ColumnMap:
        """Build from a config table such as ``{"text": "review", "label": "stars"}``."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"columns must be a table of role -> column name, got {d!r}")
        known = [f.name for f in fields(cls)]
        unknown = [key for key in d if key not in known]
        if unknown:
            raise ConfigError(f"unknown column role {unknown[0]!r}", hint="use " + ", ".join(known))
        return cls(**d)

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass
class Example:
    """One record.  ``label``: str (single), list[str] (multi), float (score) or None.

    ``line`` is where the record starts in its file; ``tokens``/``tags`` are set for
    token tagging (``label_kind="tags"``), where ``text`` is the tokens joined by spaces.
    """

    text: str
    label: str | list[str] | float | None = None
    text_pair: str | None = None
    id: str | None = None
    line: int = 0
    tokens: list[str] | None = None
    tags: list[str] | None = None


@dataclass
class Dataset:
    """Examples plus where they came from (``path`` and the file's ``sha256``)."""

    examples: list[Example]
    path: str | None = None
    sha256: str | None = None
    label_kind: str = "single"

    def __post_init__(self) -> None:
        _check_label_kind(self.label_kind)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> Dataset: ...
    def __getitem__(self, index: int | slice) -> Example | Dataset:
        if isinstance(index, slice):
            return replace(self, examples=self.examples[index])
        return self.examples[index]

    def texts(self) -> list[str]:
        return [ex.text for ex in self.examples]

    def labels(self) -> list:
        """Per-example labels; the tag lists for ``label_kind="tags"``."""
        if self.label_kind == "tags":
            return [ex.tags for ex in self.examples]
        return [ex.label for ex in self.examples]

    def label_names(self) -> list[str]:
        """Sorted class names seen in the data; ``[]`` for score and unlabelled data."""
        return sorted(set(self._flat_labels()))

    @classmethod
    def concat(cls, parts: list[Dataset]) -> Dataset:
        """Several sources as one set, in order: ``path`` lists the files (`` + ``), ``sha256`` is
        the hash of their hashes (so the run's provenance changes when any of them does)."""
        if not parts:
            raise ValueError("Dataset.concat needs at least one dataset")
        kinds = {p.label_kind for p in parts}
        if len(kinds) > 1:
            raise DataError(f"cannot mix label kinds {sorted(kinds)}", path=" + ".join(str(p.path) for p in parts))
        if len(parts) == 1:
            return parts[0]
        digest = hashlib.sha256("".join(str(p.sha256) for p in parts).encode()).hexdigest()
        return cls([ex for p in parts for ex in p.examples], " + ".join(str(p.path) for p in parts), digest,
                   parts[0].label_kind)

    def subset(self, indices: Iterable[int]) -> Dataset:
        return replace(self, examples=[self.examples[i] for i in indices])

    def summary(self) -> dict[str, Any]:
        counts = Counter(self._flat_labels())
        return {"n": len(self), "label_kind": self.label_kind,
                "label_counts": dict(sorted(counts.items())), "path": self.path, "sha256": self.sha256}

    def _flat_labels(self) -> Iterator[str]:
        if self.label_kind == "single":
            yield from (ex.label for ex in self.examples if ex.label is not None)
        elif self.label_kind in ("multi", "tags"):
            for names in self.labels():
                yield from names or ()


@dataclass(frozen=True)
class LabelMap:
    """Class names in model-output order: index <-> name, saved as ``{"labels": [...]}``."""

    labels: list[str]

    def __post_init__(self) -> None:
        labels = list(self.labels)
        if not labels or not all(isinstance(n, str) and n for n in labels) or len(set(labels)) < len(labels):
            raise ConfigError(f"labels must be distinct non-empty strings, at least one; got {labels!r}")
        object.__setattr__(self, "labels", labels)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def id(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise DataError(f"unknown label {name!r}; known labels: {_preview(self.labels)}") from None

    def name(self, idx: int) -> str:
        return self.labels[idx]

    def to_dict(self) -> dict[str, list[str]]:
        return {"labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelMap:
        if not isinstance(d, Mapping) or set(d) != {"labels"} or not isinstance(d["labels"], list):
            raise ConfigError('a label map must be {"labels": [...]}')
        return cls(d["labels"])

    def save(self, path: StrPath) -> None:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: StrPath) -> LabelMap:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON: {e.msg}", path=path, line=e.lineno) from None
        except (OSError, UnicodeDecodeError, ConfigError) as e:
            reason = e.strerror if isinstance(e, OSError) else e
            raise DataError(f"cannot read label map: {reason}", path=path) from None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> LabelMap:
        """The sorted class names of ``ds``."""
        names = ds.label_names()
        if not names:
            raise DataError(f"no class labels in this {ds.label_kind!r} data set", path=ds.path)
        return cls(names)


def file_sha256(path: StrPath) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks; a read failure is a :class:`DataError`."""
    try:
        return sha256_file(path)
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror}", path=path) from None


def iter_records(path: StrPath, fmt: str | None = None,
                 encoding: str = "utf-8") -> Iterator[tuple[int, Record]]:
    """Stream ``(line, record)`` pairs; the first bad record raises :class:`DataError`.

    ``fmt`` defaults to the one the extension names.  The path, format and encoding are
    checked at once; the file is read lazily as the iterator advances.
    """
    source, fmt = _resolve(path, fmt, encoding)
    return _raise_problems(_records(source, fmt, encoding))


def load_dataset(path: StrPath, columns: ColumnMap = ColumnMap(), *, label_kind: str = "single",
                 labels: Sequence[str] | None = None, fmt: str | None = None,
                 encoding: str = "utf-8", multi_label_sep: str = "|", max_errors: int = 1) -> Dataset:
    """Read and validate a data file.

    ``label_kind``: ``"single"`` (one class name), ``"multi"`` (a JSON list or a
    ``multi_label_sep``-separated cell), ``"score"`` (a number), ``"tags"`` (JSONL/Parquet
    list columns: ``columns.text`` holds the tokens, ``columns.label`` one tag per token)
    or ``"none"`` (labels ignored).  ``labels`` restricts the class names (not scores).
    ``max_errors`` > 1 collects that many problems before raising one error listing them.
    """
    _check_label_kind(label_kind)
    if label_kind != "none" and columns.label is None:
        raise ConfigError(f"label kind {label_kind!r} needs a label column",
                          hint="name the label column, or use label_kind='none' for unlabelled data")
    if not multi_label_sep:
        raise ConfigError("multi_label_sep must be a non-empty string")
    if max_errors < 1:
        raise ConfigError(f"max_errors must be >= 1, got {max_errors}")
    source, fmt = _resolve(path, fmt, encoding)
    if label_kind == "tags" and fmt in ("csv", "tsv"):
        raise DataError("token tagging data needs list columns: use JSONL or Parquet", path=source)

    label_column = columns.label if label_kind != "none" else None
    needed = [c for c in (columns.text, columns.text_pair, columns.id, label_column) if c]
    allowed = set(labels) if labels is not None else None
    examples: list[Example] = []
    problems: list[DataError] = []
    first_line_of_id: dict[str, int] = {}
    for line, record in _records(source, fmt, encoding):
        missing = [] if isinstance(record, DataError) else [c for c in needed if c not in record]
        if missing and fmt != "jsonl":  # the header (or schema) lacks it: every row would fail
            raise _missing_column(missing[0], record, source, None if fmt == "parquet" else 1)
        try:
            if isinstance(record, DataError):
                raise record
            if missing:
                raise _missing_column(missing[0], record, source, line)
            example = _example(record, line, columns, label_kind, allowed, multi_label_sep)
            if example.id in first_line_of_id:
                raise DataError(f"duplicate id {example.id!r} (first on line {first_line_of_id[example.id]})")
        except DataError as e:
            problems.append(e if e.path else DataError(e.problem, path=source, line=line, hint=e.hint))
            if len(problems) >= max_errors:
                break
            continue
        if example.id is not None:
            first_line_of_id[example.id] = line
        examples.append(example)
    if problems:
        raise _combine(problems, max_errors)
    if not examples:
        raise DataError("no data rows", path=source, hint="the file is empty or holds only a header")
    return Dataset(examples, str(source), file_sha256(source), label_kind)


def stratified_split(ds: Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                     seed: int = 0) -> tuple[Dataset, ...]:
    """Split ``ds`` into ``len(fractions)`` disjoint parts, reproducibly for a given ``seed``.

    Single-label data is stratified: each class is split in the given proportions, and a
    class with at least ``len(fractions)`` examples has one in every part.  Other kinds get
    a plain shuffled split.  Each part keeps the original example order.
    """
    fractions = tuple(fractions)
    if not fractions or min(fractions) <= 0 or not math.isclose(sum(fractions), 1.0):
        raise ConfigError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
    groups: dict[Any, list[int]] = {}
    for i, ex in enumerate(ds):
        groups.setdefault(ex.label if ds.label_kind == "single" else None, []).append(i)
    rng = random.Random(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for key in sorted(groups, key=repr):  # repr: hand-built data may hold None labels
        indices = groups[key]
        rng.shuffle(indices)
        start = 0
        for part, count in zip(parts, _allocate(len(indices), fractions)):
            part.extend(indices[start:start + count])
            start += count
    if not all(parts):
        raise DataError(f"{len(ds)} examples are too few to split into {len(fractions)} "
                        "non-empty parts", path=ds.path)
    return tuple(ds.subset(sorted(part)) for part in parts)


def _allocate(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Part sizes for ``n`` items: largest remainders, then at least 1 per part if ``n`` allows."""
    exact = [n * f for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[:n - sum(counts)]:
        counts[i] += 1
    if n >= len(counts):
        for i in [i for i, c in enumerate(counts) if c == 0]:
            counts[counts.index(max(counts))] -= 1
            counts[i] = 1
    return counts


def _check_label_kind(kind: str) -> None:
    if kind not in LABEL_KINDS:
        raise ConfigError(f"unknown label kind {kind!r}", hint="use one of " + ", ".join(LABEL_KINDS))


def _resolve(path: StrPath, fmt: str | None, encoding: str) -> tuple[Path, str]:
    """Check that the file exists and that the format and encoding are known."""
    source = Path(path)
    if not source.is_file():
        raise DataError("file not found" if not source.exists() else "not a file", path=source)
    if fmt is None:
        fmt = _EXTENSIONS.get(source.suffix.lower())
        if fmt is None:
            raise DataError(f"cannot tell the format from the extension {source.suffix!r}: pass --format "
                            + ", ".join(SUPPORTED_FORMATS), path=source)
    elif fmt.lower() not in SUPPORTED_FORMATS:
        raise DataError(f"unsupported format {fmt!r}", path=source,
                        hint="use one of " + ", ".join(SUPPORTED_FORMATS))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}", hint="e.g. utf-8, latin-1, cp1252") from None
    return source, fmt.lower()


def _raise_problems(records: Iterator[tuple[int, Record | DataError]]) -> Iterator[tuple[int, Record]]:
    for line, record in records:
        if isinstance(record, DataError):
            raise record
        yield line, record


def _records(path: Path, fmt: str, encoding: str) -> Iterator[tuple[int, Record | DataError]]:
    """Yield ``(line, record)``; a bad record is yielded as a DataError so callers may go on."""
    if fmt == "parquet":
        yield from _parquet_records(path)
        return
    # Excel writes a byte-order mark; utf-8-sig skips one if present.
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with path.open(encoding=codec, newline="") as f:
            yield from (_jsonl_records(f, path) if fmt == "jsonl" else _csv_records(f, path, fmt))
    except UnicodeDecodeError:
        raise _decode_error(path, encoding) from None


def _jsonl_records(lines: Iterable[str], path: Path) -> Iterator[tuple[int, Record | DataError]]:
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            is_object = isinstance(record, dict)
            problem = None if is_object else f"expected a JSON object, got {type(record).__name__}"
        except json.JSONDecodeError as e:
            problem = f"malformed JSON: {e.msg} (column {e.colno})"
        yield number, DataError(problem, path=path, line=number) if problem else record


def _csv_records(lines: Iterable[str], path: Path, fmt: str) -> Iterator[tuple[int, Record | DataError]]:
    reader = csv.reader(lines, dialect="excel-tab" if fmt == "tsv" else "excel", strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1  # a record may span several physical lines
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"malformed {fmt.upper()} record: {e}", path=path, line=start,
                            hint='check the quoting: a field that opens with " must close with "') from None
        if not row:
            continue
        if header is None:
            if len(set(row)) < len(row):
                raise DataError(f"duplicate column names in the header: {row}", path=path, line=start)
            header = row
        elif len(row) != len(header):
            yield start, DataError(f"expected {len(header)} fields (as in the header), found {len(row)}",
                                   path=path, line=start,
                                   hint="quote fields that contain the delimiter")
        else:
            yield start, dict(zip(header, row))


def _parquet_records(path: Path) -> Iterator[tuple[int, Record]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow", path=path, hint="pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"not a readable Parquet file: {e}", path=path) from None
    with parquet:
        batches = parquet.iter_batches(batch_size=1024)
        yield from enumerate(chain.from_iterable(batch.to_pylist() for batch in batches), 1)


def _decode_error(path: Path, encoding: str) -> DataError:
    """Find the first byte ``encoding`` cannot decode by re-reading the raw file line by line."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = number = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as e:
                return DataError(f"cannot decode byte 0x{e.object[e.start]:02x} at byte offset "
                                 f"{offset + e.start} as {encoding}", path=path, line=number,
                                 hint=_ENCODING_HINT)
            offset += len(raw)
    return DataError(f"the file ends inside a {encoding} character", path=path,
                     line=number or None, hint=_ENCODING_HINT)


def _example(record: Record, line: int, columns: ColumnMap, kind: str,
             allowed: set[str] | None, sep: str) -> Example:
    """Build one Example; raises DataError (without path/line: the caller adds them)."""
    tokens = tags = label = None
    if kind == "tags":
        tokens = _string_list(record[columns.text], columns.text, "tokens")
        tags = _string_list(record[columns.label], columns.label, "tags")
        if len(tokens) != len(tags):
            raise DataError(f"{len(tokens)} tokens but {len(tags)} tags")
        text = " ".join(tokens)
        _check_known(tags, allowed)
    else:
        text = _text(record[columns.text], columns.text)
        if kind != "none":
            label = _label(record[columns.label], columns.label, kind, sep, allowed)
    return Example(
        text=text,
        label=label,
        text_pair=_text(record[columns.text_pair], columns.text_pair) if columns.text_pair else None,
        id=_name(record[columns.id], columns.id, "id") if columns.id else None,
        line=line, tokens=tokens, tags=tags,
    )


def _text(value: Any, column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"empty text in column {column!r}")
    if not isinstance(value, str):
        raise DataError(f"text in column {column!r} must be a string, got {type(value).__name__}")
    return value


def _name(value: Any, column: str, what: str = "label") -> str:
    """A class name or id: a string (stripped) or an integer, never empty."""
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        raise DataError(f"{what} in column {column!r} must be a string, got {type(value).__name__}: "
                        f"{value!r}", hint="use label_kind 'multi' for lists" if what == "label" else None)
    name = "" if value is None else str(value).strip()
    if not name:
        raise DataError(f"missing {what} in column {column!r}")
    return name


def _label(value: Any, column: str, kind: str, sep: str, allowed: set[str] | None) -> str | list[str] | float:
    if value is None or value == [] or (isinstance(value, str) and not value.strip()):
        raise DataError(f"missing label in column {column!r}")
    if kind == "single":
        return _check_known([_name(value, column)], allowed)[0]
    if kind == "score":
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise DataError(f"label {value!r} in column {column!r} is not a finite number",
                            hint="label kind 'score' needs numeric labels")
        return score
    parts = value.split(sep) if isinstance(value, str) else value
    if not isinstance(parts, list):
        raise DataError(f"labels in column {column!r} must be a list or {sep!r}-separated, "
                        f"got {type(value).__name__}")
    names = [_name(part, column) for part in parts if not (isinstance(part, str) and not part.strip())]
    if not names:
        raise DataError(f"missing label in column {column!r}")
    return _check_known(list(dict.fromkeys(names)), allowed)


def _string_list(value: Any, column: str, what: str) -> list[str]:
    if value is None or value == []:
        raise DataError(f"empty {what} in column {column!r}")
    if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
        raise DataError(f"{what} in column {column!r} must be a list of non-empty strings")
    return value


def _check_known(names: list[str], allowed: set[str] | None) -> list[str]:
    """``names``, if ``allowed`` is None or holds them all."""
    unknown = [name for name in names if allowed is not None and name not in allowed]
    if unknown:
        raise DataError(f"unknown label {unknown[0]!r}; expected one of: {_preview(sorted(allowed or ()))}",
                        hint="fix the label or add it to the task's labels")
    return names


def _missing_column(column: str, record: Record, path: Path, line: int | None) -> DataError:
    close = difflib.get_close_matches(column, list(record), n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return DataError(f"missing column {column!r}; columns found: {_preview(list(record))}",
                     path=path, line=line, hint=guess + "set the column mapping (text=..., label=...)")


def _combine(problems: list[DataError], limit: int) -> DataError:
    """One error for several problems; the first leads, the others follow one per line."""
    first, rest = problems[0], problems[1:]
    if not rest:
        return first
    more = "" if len(problems) < limit else f"; stopped at max_errors={limit}"
    listing = "".join(f"\n  line {p.line}: {p.problem}" for p in rest)
    return DataError(f"{first.problem} (+{len(rest)} more problem(s){more}){listing}",
                     path=first.path, line=first.line, hint=first.hint)


def _preview(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
