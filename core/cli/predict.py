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
  tuneforge predict exports/support-intents/v1 --file big.parquet --engine ray --out scored/   # Ray Data

Prints one JSON object per input line (JSONL), in input order.  With --engine ray (pip install
'tuneforge[ray]') the file is scored by a pool of Ray actors into OUT/part-*.jsonl|parquet with an
id per row; rerun the same command after a crash and finished parts are kept (docs/scale-out.md)."""


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
    @click.option("--variant", help="ONNX variant (default: the fastest measured here at batch 1, and "
                                    "for 32+ texts at once the fastest at batch 32; one named serves every call).")
    @click.option("--batch-size", type=int, default=32, show_default=True)
    @click.option("--raw", is_flag=True, help="Print model predictions without the plugin's post-processing.")
    @click.option("--trust", type=click.Path(dir_okay=False), envvar="TUNEFORGE_TRUST",
                  help="Only load a bundle signed by this Ed25519 public key (PEM; env TUNEFORGE_TRUST).")
    @click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                  help="local: this process, JSONL on stdout; ray: Ray Data actors, parts written to --out.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False),
                  help="--engine ray: output folder (part-*.jsonl|parquet, manifest.json); rerun to resume.")
    @click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True,
                  help="--engine ray: output format.")
    @click.option("--id-column", help="--engine ray: column kept as each row's id (default: id if present, "
                                      "else the row number).")
    @click.option("--shard-rows", type=click.IntRange(1), default=10_000, show_default=True,
                  help="--engine ray: rows per output part (the unit a resumed run skips).")
    @click.option("--actors", type=click.IntRange(1), help="--engine ray: scoring actors (default: one per CPU).")
    @click.option("--address", help="--engine ray: an existing Ray cluster (ray://HOST:10001); default: a local Ray.")
    def predict(bundle, texts, file, column, variant, batch_size, raw, trust, engine, out_dir, fmt, id_column,
                shard_rows, actors, address):
        """Run a bundle on texts and stream predictions as JSONL (no torch involved)."""
        from ..errors import UsageError

        if engine == "ray":
            return _predict_on_ray(bundle, texts, file, column, variant, batch_size, raw, trust, out_dir, fmt,
                                   id_column, shard_rows, actors, address)
        if out_dir is not None or address is not None or actors is not None:
            raise UsageError("--out, --actors and --address need --engine ray",
                             hint="without it predictions go to stdout")
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


def _predict_on_ray(bundle, texts, file, column, variant, batch_size, raw, trust, out_dir, fmt, id_column,
                    shard_rows, actors, address) -> None:
    from ..errors import UsageError
    from ..ray_serve import init_ray

    if texts or not file or file == "-":
        raise UsageError("--engine ray scores a file", hint="pass --file FILE (CSV/TSV/JSONL/Parquet) and --out DIR")
    if out_dir is None:
        raise UsageError("--engine ray writes its output to a folder", hint="pass --out DIR")
    from ..ray_data import ScoreJob, score

    job = ScoreJob(bundle=bundle, source=file, out_dir=out_dir, column=column or "text", id_column=id_column,
                   format=fmt, shard_rows=shard_rows, actors=actors, batch_size=batch_size, variant=variant,
                   trust=trust, raw=raw)
    started = init_ray(address)
    try:
        report = score(job, progress=lambda k: click.echo(f"part {k:05d} written", err=True))
    finally:
        if started:
            import ray

            ray.shutdown()
    click.echo(json.dumps(report.to_dict() | {"parts": len(report.parts)}, indent=2))


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
