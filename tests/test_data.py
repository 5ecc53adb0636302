"""Tests for tuneforge.data: readers, validation with file:line errors, splits, label maps."""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from tuneforge.data import (
    SUPPORTED_FORMATS,
    ColumnMap,
    Dataset,
    Example,
    LabelMap,
    file_sha256,
    iter_records,
    load_dataset,
    stratified_split,
)
from tuneforge.errors import ConfigError, DataError

ROWS = [
    {"id": "a1", "text": "great product, works well", "label": "pos"},
    {"id": "a2", "text": 'said "meh", then, left', "label": "neg"},
    {"id": "a3", "text": "two\nlines", "label": "neutral"},
]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def write_jsonl(tmp_path: Path, name: str, records: list) -> Path:
    return write(tmp_path, name, "".join(json.dumps(r) + "\n" for r in records))


def write_table(tmp_path: Path, fmt: str, rows: list[dict]) -> Path:
    """``rows`` as a ``fmt`` file, written with each format's usual tool."""
    path = tmp_path / f"data.{fmt}"
    if fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    elif fmt == "jsonl":
        write_jsonl(tmp_path, path.name, rows)
    else:
        with path.open("w", encoding="utf-8", newline="") as f:
            dialect = "excel-tab" if fmt == "tsv" else "excel"
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), dialect=dialect)
            writer.writeheader()
            writer.writerows(rows)
    return path


# -- reading every format ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_every_format_loads_the_same_examples(tmp_path, fmt):
    path = write_table(tmp_path, fmt, ROWS)
    ds = load_dataset(path, ColumnMap(id="id"))
    assert [(ex.id, ex.text, ex.label) for ex in ds] == [(r["id"], r["text"], r["label"]) for r in ROWS]
    assert ds.path == str(path) and ds.sha256 == file_sha256(path) and ds.label_kind == "single"
    expected_lines = {"csv": [2, 3, 4], "tsv": [2, 3, 4], "jsonl": [1, 2, 3], "parquet": [1, 2, 3]}[fmt]
    assert [ex.line for ex in ds] == expected_lines


@pytest.mark.parametrize("name, fmt", [("data.ndjson", None), ("data.json-lines", None),
                                        ("data.txt", "jsonl"), ("DATA.JSONL", None)])
def test_format_from_extension_or_argument(tmp_path, name, fmt):
    path = write_jsonl(tmp_path, name, [{"text": "hi", "label": "x"}])
    assert load_dataset(path, fmt=fmt).texts() == ["hi"]


def test_column_mapping_and_text_pair(tmp_path):
    path = write(tmp_path, "pairs.csv", "q,passage,relevance,extra\nwho?,me,0.5,z\nwhy?,because,1,z\n")
    ds = load_dataset(path, ColumnMap(text="q", text_pair="passage", label="relevance"), label_kind="score")
    assert [(ex.text, ex.text_pair, ex.label) for ex in ds] == [("who?", "me", 0.5), ("why?", "because", 1.0)]


def test_unlabelled_data_ignores_the_label_column(tmp_path):
    path = write(tmp_path, "predict.csv", "text\nfirst\nsecond\n")
    ds = load_dataset(path, ColumnMap(label=None), label_kind="none")
    assert ds.texts() == ["first", "second"] and ds.labels() == [None, None] and ds.label_names() == []


def test_utf8_byte_order_mark_is_skipped(tmp_path):
    path = write(tmp_path, "excel.csv", "\ufefftext,label\nhi,x\n")
    assert load_dataset(path).texts() == ["hi"]


def test_blank_jsonl_lines_are_skipped_but_counted(tmp_path):
    path = write(tmp_path, "gaps.jsonl", '{"text": "a", "label": "x"}\n\n   \n{"text": "b", "label": 1}\n')
    assert [(ex.line, ex.label) for ex in load_dataset(path)] == [(1, "x"), (4, "1")]


def test_quoted_multiline_csv_field_keeps_later_line_numbers_right(tmp_path):
    path = write(tmp_path, "multi.csv", 'text,label\n"line one\nline two\nline three",a\nok,b\n"  ",c\n')
    records = list(iter_records(path))  # parsing only: the blank text is not iter_records' business
    assert [line for line, _ in records] == [2, 5, 6]
    assert records[0][1] == {"text": "line one\nline two\nline three", "label": "a"}
    with pytest.raises(DataError, match=r"multi\.csv:6: empty text"):
        load_dataset(path)


def test_latin1_file_needs_the_right_encoding(tmp_path):
    path = write(tmp_path, "latin.csv", "text,label\nplain,a\ncaf\xe9 cr\xe8me,b\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert info.value.line == 3 and "latin.csv:3:" in str(info.value)
    assert "0xe9" in str(info.value) and "byte offset 22" in str(info.value)
    assert "--encoding" in info.value.hint and "latin-1" in info.value.hint
    assert load_dataset(path, encoding="latin-1").texts() == ["plain", "café crème"]


def test_iter_records_is_lazy(tmp_path):
    good = '{"text": "row", "label": "x"}\n'
    path = write(tmp_path, "big.jsonl", good * 200_000 + "{broken\n")  # ~6 MB, malformed at the end
    records = iter_records(path)
    assert inspect.isgenerator(records)
    for line, record in records:
        assert (line, record) == (1, {"text": "row", "label": "x"})
        break  # the malformed last line is never read, so nothing raised
    with pytest.raises(DataError, match=r"big\.jsonl:200001: malformed JSON"):
        for _ in iter_records(path):
            pass


def test_iter_records_checks_path_and_format_before_reading(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        iter_records(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="--format") as info:
        iter_records(write(tmp_path, "notes.txt", "text\nhi\n"))
    assert "notes.txt" in str(info.value)


# -- one DataError per kind of bad input, naming file and line ---------------------------

BAD_INPUTS = [
    # (file name, contents, kwargs, expected line, words expected in the message)
    ("missing_col.csv", "body,label\nhi,a\n", {}, 1, ["missing column 'text'", "body, label"]),
    ("missing_col.jsonl", '{"text": "a", "label": "x"}\n{"body": "b", "label": "x"}\n', {}, 2,
     ["missing column 'text'", "body, label"]),
    ("empty_text.csv", "text,label\nok,a\n   ,b\n", {}, 3, ["empty text"]),
    ("null_text.jsonl", '{"text": null, "label": "x"}\n', {}, 1, ["empty text"]),
    ("number_text.jsonl", '{"text": 5, "label": "x"}\n', {}, 1, ["must be a string"]),
    ("no_label.csv", "text,label\nok,a\nfine,\n", {}, 3, ["missing label"]),
    ("list_label.jsonl", '{"text": "a", "label": ["x"]}\n', {}, 1, ["must be a string", "list"]),
    ("unknown.csv", "text,label\nok,a\nfine,zzz\n", {"labels": ["a", "b"]}, 3,
     ["unknown label 'zzz'", "a, b"]),
    ("bad_json.jsonl", '{"text": "a", "label": "x"}\n{"text": "b",\n', {}, 2, ["malformed JSON"]),
    ("not_object.jsonl", '{"text": "a", "label": "x"}\n["b", "x"]\n', {}, 2,
     ["expected a JSON object", "list"]),
    ("dup_id.csv", "id,text,label\n1,a,x\n2,b,x\n1,c,x\n", {"columns": ColumnMap(id="id")}, 4,
     ["duplicate id '1'", "first on line 2"]),
    ("fields.csv", "text,label\na,x\nb,x,extra\n", {}, 3, ["expected 2 fields", "found 3"]),
    ("quote.csv", 'text,label\na,x\n"unclosed,x\nb,y\n', {}, 3, ["malformed CSV"]),
    ("dup_header.csv", "text,text,label\na,b,x\n", {}, 1, ["duplicate column names"]),
    ("score.csv", "text,label\na,0.5\nb,lots\n", {"label_kind": "score"}, 3,
     ["'lots'", "not a finite number"]),
    ("multi.jsonl", '{"text": "a", "label": []}\n', {"label_kind": "multi"}, 1, ["missing label"]),
    ("tags_len.jsonl", '{"text": ["New", "York"], "label": ["B-LOC"]}\n', {"label_kind": "tags"}, 1,
     ["2 tokens but 1 tags"]),
    ("tags_type.jsonl", '{"text": "New York", "label": ["B-LOC", "I-LOC"]}\n', {"label_kind": "tags"}, 1,
     ["tokens", "list of non-empty strings"]),
    ("tags_unknown.jsonl", '{"text": ["Paris"], "label": ["B-CITY"]}\n',
     {"label_kind": "tags", "labels": ["O"]}, 1, ["unknown label 'B-CITY'"]),
]


@pytest.mark.parametrize("name, content, kwargs, line, words", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_names_file_and_line(tmp_path, name, content, kwargs, line, words):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        load_dataset(path, **kwargs)
    assert info.value.path == str(path) and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("name, content, words", [
    ("empty.csv", "", ["no data rows"]),
    ("header_only.csv", "text,label\n", ["no data rows"]),
    ("blank.jsonl", "\n\n", ["no data rows"]),
    ("data.xlsx", "whatever", ["cannot tell the format"]),
])
def test_bad_file_names_the_file(tmp_path, name, content, words):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}: ")
    assert all(word in str(info.value) for word in words)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_dataset(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unsupported format 'xml'"):
        load_dataset(write(tmp_path, "data.csv", "text,label\na,b\n"), fmt="xml")


def test_missing_column_suggests_a_close_name(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(write(tmp_path, "d.csv", "Text,label\na,b\n"))
    assert "'Text'" in info.value.hint


def test_parquet_missing_column_and_not_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = write_table(tmp_path, "parquet", [{"body": "x", "label": "a"}])
    with pytest.raises(DataError, match=r"data\.parquet: missing column 'text'; columns found: body, label"):
        load_dataset(path)
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_dataset(write(tmp_path, "fake.parquet", "text,label\n"))


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow...` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"data\.parquet: reading Parquet needs pyarrow") as info:
        load_dataset(write(tmp_path, "data.parquet", b"PAR1"))
    assert info.value.hint == "pip install pyarrow"


def test_max_errors_collects_problems_first_one_leading(tmp_path):
    content = "text,label\n,a\nok,b\nfine,\n  ,c\nlast,\n"
    path = write(tmp_path, "many.csv", content)
    with pytest.raises(DataError) as info:
        load_dataset(path, max_errors=10)
    message = str(info.value)
    assert info.value.line == 2 and message.startswith(f"{path}:2: empty text")
    assert "+3 more" in message and "line 4: missing label" in message and "line 6: missing label" in message
    with pytest.raises(DataError) as info:
        load_dataset(path, max_errors=2)
    message = str(info.value)
    assert "+1 more" in message and "max_errors=2" in message and "line 5" not in message


# -- label kinds ------------------------------------------------------------------------


def test_multi_label_from_csv_cells_and_json_lists(tmp_path):
    csv_path = write(tmp_path, "m.csv", "text,label\na,x|y\nb, y | z \nc,x||x\n")
    assert load_dataset(csv_path, label_kind="multi").labels() == [["x", "y"], ["y", "z"], ["x"]]
    semicolons = write(tmp_path, "semi.csv", "text,label\na,x;y\n")
    assert load_dataset(semicolons, label_kind="multi", multi_label_sep=";").labels() == [["x", "y"]]
    jsonl = write_jsonl(tmp_path, "m.jsonl", [{"text": "a", "label": ["x", "y"]},
                                              {"text": "b", "label": "z"}])
    ds = load_dataset(jsonl, label_kind="multi")
    assert ds.labels() == [["x", "y"], ["z"]] and ds.label_names() == ["x", "y", "z"]
    assert ds.summary()["label_counts"] == {"x": 1, "y": 1, "z": 1}


def test_score_labels_are_floats(tmp_path):
    path = write_jsonl(tmp_path, "s.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "0.25"}])
    ds = load_dataset(path, label_kind="score")
    assert ds.labels() == [1.0, 0.25] and ds.label_names() == []
    with pytest.raises(DataError, match="not a finite number"):
        load_dataset(write_jsonl(tmp_path, "nan.jsonl", [{"text": "a", "label": "nan"}]), label_kind="score")


def test_token_tags(tmp_path):
    tokens, tags = ["Ada", "Lovelace", "wrote"], ["B-PER", "I-PER", "O"]
    path = write_jsonl(tmp_path, "ner.jsonl", [{"tokens": tokens, "tags": tags}])
    ds = load_dataset(path, ColumnMap(text="tokens", label="tags"), label_kind="tags")
    assert (ds[0].tokens, ds[0].tags, ds[0].text) == (tokens, tags, "Ada Lovelace wrote")
    assert ds.label_names() == ["B-PER", "I-PER", "O"] and ds.labels() == [["B-PER", "I-PER", "O"]]
    with pytest.raises(DataError, match="use JSONL or Parquet"):
        load_dataset(write(tmp_path, "ner.csv", "text,label\na,O\n"), label_kind="tags")


def test_bad_arguments_are_config_errors(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\na,b\n")
    with pytest.raises(ConfigError, match="unknown label kind"):
        load_dataset(path, label_kind="regression")
    with pytest.raises(ConfigError, match="needs a label column"):
        load_dataset(path, ColumnMap(label=None))
    with pytest.raises(ConfigError, match="max_errors"):
        load_dataset(path, max_errors=0)
    with pytest.raises(ConfigError, match="unknown encoding"):
        load_dataset(path, encoding="klingon")


# -- Dataset, ColumnMap -----------------------------------------------------------------


def make_dataset(counts: dict[str, int], kind: str = "single") -> Dataset:
    examples = [Example(text=f"{label} {i}", label=label) for label, n in counts.items() for i in range(n)]
    return Dataset(examples, path="mem.csv", sha256="abc", label_kind=kind)


def test_dataset_access_and_summary():
    ds = make_dataset({"b": 2, "a": 1})
    assert len(ds) == 3 and ds[0].text == "b 0" and ds.texts() == ["b 0", "b 1", "a 0"]
    part = ds[1:]
    assert isinstance(part, Dataset) and part.texts() == ["b 1", "a 0"]
    assert (part.path, part.sha256, part.label_kind) == ("mem.csv", "abc", "single")
    assert ds.subset([2, 0]).labels() == ["a", "b"]
    assert ds.label_names() == ["a", "b"]
    assert ds.summary() == {"n": 3, "label_kind": "single", "label_counts": {"a": 1, "b": 2},
                            "path": "mem.csv", "sha256": "abc"}
    with pytest.raises(ConfigError):
        Dataset([], label_kind="nope")


def test_column_map_round_trip_and_validation():
    columns = ColumnMap.from_dict({"text": "review", "label": None, "id": "rid"})
    assert columns == ColumnMap(text="review", label=None, id="rid")
    assert ColumnMap.from_dict(columns.to_dict()) == columns
    with pytest.raises(ConfigError, match="'lable'"):
        ColumnMap.from_dict({"text": "review", "lable": "stars"})
    with pytest.raises(ConfigError, match="non-empty string"):
        ColumnMap(text="")
    with pytest.raises(ConfigError, match="own column"):
        ColumnMap(text="x", label="x")


def test_file_sha256_matches_hashlib(tmp_path):
    path = write(tmp_path, "blob.bin", bytes(range(256)) * 5000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# -- splits -----------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete():
    ds = make_dataset({"a": 50, "b": 30, "c": 20})
    first = stratified_split(ds, seed=7)
    again = stratified_split(ds, seed=7)
    assert [p.texts() for p in first] == [p.texts() for p in again]
    assert [p.texts() for p in stratified_split(ds, seed=8)] != [p.texts() for p in first]
    all_texts = [t for part in first for t in part.texts()]
    assert sorted(all_texts) == sorted(ds.texts()) and len(set(all_texts)) == len(ds)
    assert [len(p) for p in first] == [80, 10, 10]


def test_split_keeps_class_proportions():
    ds = make_dataset({"a": 60, "b": 30, "c": 10})
    train, validation, test = stratified_split(ds, (0.6, 0.2, 0.2), seed=1)
    assert Counter(train.labels()) == {"a": 36, "b": 18, "c": 6}
    assert Counter(validation.labels()) == {"a": 12, "b": 6, "c": 2}
    assert Counter(test.labels()) == {"a": 12, "b": 6, "c": 2}


def test_split_gives_every_part_each_class_with_enough_examples():
    ds = make_dataset({"common": 40, "rare": 3, "single": 1})
    parts = stratified_split(ds, seed=0)
    assert all("rare" in part.labels() for part in parts)
    assert sum("single" in part.labels() for part in parts) == 1


def test_split_of_other_kinds_is_a_plain_shuffle():
    ds = Dataset([Example(text=str(i), label=i / 10) for i in range(10)], label_kind="score")
    train, test = stratified_split(ds, (0.7, 0.3), seed=3)
    assert (len(train), len(test)) == (7, 3) and train.label_kind == "score"
    assert sorted(train.labels() + test.labels()) == ds.labels()


@pytest.mark.parametrize("fractions", [(0.5, 0.6), (1.2, -0.2), ()])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ConfigError, match="sum to 1"):
        stratified_split(make_dataset({"a": 10}), fractions)


def test_split_too_small_data_set():
    with pytest.raises(DataError, match=r"mem\.csv: 2 examples are too few"):
        stratified_split(make_dataset({"a": 2}), (0.4, 0.3, 0.3))


# -- LabelMap ---------------------------------------------------------------------------


def test_label_map_round_trip(tmp_path):
    labels = LabelMap.from_dataset(make_dataset({"neg": 1, "pos": 2, "neutral": 1}))
    assert labels.labels == ["neg", "neutral", "pos"] and len(labels) == 3
    assert [labels.id(n) for n in labels.labels] == [0, 1, 2] and labels.name(2) == "pos"
    path = tmp_path / "labels.json"
    labels.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"labels": ["neg", "neutral", "pos"]}
    assert LabelMap.load(path) == labels == LabelMap.from_dict(labels.to_dict())


def test_label_map_unknown_label_lists_known_ones():
    with pytest.raises(DataError, match=r"unknown label 'maybe'.*neg, pos"):
        LabelMap(["neg", "pos"]).id("maybe")


@pytest.mark.parametrize("labels", [[], ["a", "a"], ["a", 3], ["a", ""]])
def test_label_map_validates_labels(labels):
    with pytest.raises(ConfigError):
        LabelMap(labels)


def test_label_map_load_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"bad\.json:1: malformed JSON"):
        LabelMap.load(write(tmp_path, "bad.json", "{labels"))
    with pytest.raises(DataError, match=r"wrong\.json: cannot read label map"):
        LabelMap.load(write(tmp_path, "wrong.json", '{"names": ["a"]}'))
    with pytest.raises(DataError, match="no class labels"):
        LabelMap.from_dataset(make_dataset({"a": 1}, kind="score"))
