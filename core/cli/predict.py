"""``tuneforge predict``."""

from __future__ import annotations

import json
import sys

import click

EXAMPLE = """\b
Examples:
  tuneforge predict exports/support-intents/v1 --text "I lost my card" --text "how do I top up?"
  tuneforge predict exports/support-intents/v1 --file questions.csv --column text > out.jsonl
  echo "where is my money" | tuneforge predict exports/support-intents/v1 --file -

Prints one JSON object per input line (JSONL), in input order."""


def _read_texts(file: str, column: str | None):
    from ..data import ColumnMap, load_dataset

    if file == "-":
        from ..errors import UsageError

        stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
        lines = stdin if stdin is not None else sys.stdin
        for number, line in enumerate(lines, 1):
            if isinstance(line, bytes):
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UsageError(f"stdin line {number} is not valid UTF-8 (byte {e.start + 1})",
                                     hint="convert the input to UTF-8, e.g. with iconv") from None
            if line.strip():
                yield line.rstrip("\r\n")
        return
    ds = load_dataset(file, ColumnMap(text=column or "text", label=None), label_kind="none")
    for e in ds.examples:
        yield e.text


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("bundle", type=click.Path(exists=True, file_okay=False))
    @click.option("--text", "texts", multiple=True, help="A text to classify (repeatable).")
    @click.option("--file", "file", help="CSV/TSV/JSONL/Parquet file, or - for one text per stdin line.")
    @click.option("--column", help="Text column of --file (default: text).")
    @click.option("--variant", help="ONNX variant (default: the fastest that passed parity here).")
    @click.option("--batch-size", type=int, default=32, show_default=True)
    @click.option("--raw", is_flag=True, help="Print model predictions without the plugin's post-processing.")
    @click.option("--trust", type=click.Path(dir_okay=False), envvar="TUNEFORGE_TRUST",
                  help="Only load a bundle signed by this Ed25519 public key (PEM; env TUNEFORGE_TRUST).")
    def predict(bundle, texts, file, column, variant, batch_size, raw, trust):
        """Run a bundle on texts and stream predictions as JSONL (no torch involved)."""
        from ..errors import UsageError
        from ..runtime import Predictor
        from ..runtime.tokenization import check_utf8

        if not texts and not file:
            raise UsageError("nothing to predict", hint="pass --text TEXT or --file FILE")
        for i, text in enumerate(texts, 1):
            check_utf8(text, f"--text #{i}")
            if not text.strip():
                raise UsageError(f"--text #{i} is empty", hint="pass a text with at least one word")
        predictor = Predictor.load(bundle, variant=variant, trust=trust)
        postprocess = None if raw else _postprocessor(predictor)
        source = list(texts) if texts else _read_texts(file, column)
        chunk: list[str] = []
        for text in source:
            chunk.append(text)
            if len(chunk) >= batch_size * 8:
                _emit(predictor, chunk, batch_size, postprocess)
                chunk = []
        if chunk:
            _emit(predictor, chunk, batch_size, postprocess)


def _postprocessor(predictor):
    from ..plugin_manager import get_plugin_manager
    from ..tasks import all_tasks

    task = all_tasks().get(predictor.task)
    if task is None:
        return None
    hook = get_plugin_manager().hook.tuneforge_postprocess
    return lambda texts, preds: hook(task=task, texts=texts, predictions=preds)


def _emit(predictor, texts: list[str], batch_size: int, postprocess) -> None:
    preds = predictor.predict(texts, batch_size=batch_size)
    rows = postprocess(texts, preds) if postprocess else None
    rows = rows or [p.to_dict() for p in preds]
    for text, row in zip(texts, rows):
        click.echo(json.dumps({"text": text, **row}, ensure_ascii=False))
