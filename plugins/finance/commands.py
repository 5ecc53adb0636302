"""``tuneforge finance ...`` and ``tuneforge report finance`` (registered by the plugin's hook).

Heavy imports (onnxruntime, matplotlib) happen inside the commands.
"""

from __future__ import annotations

import json

import click

EXAMPLE = """\b
Examples:
  tuneforge train --task finance-sentiment --mode top-k --epochs 1
  tuneforge export runs/finance-sentiment-top-k-<time> --variants fp32,int8
  tuneforge new app my-monitor --template finance-monitor
  tuneforge finance monitor --config my-monitor/monitor.toml
  tuneforge finance entities --text "$ACME slumps; Globex beats" --config my-monitor/monitor.toml
  tuneforge report finance --db my-monitor/monitor.db --since 24h --out reports/"""

REPORT_EXAMPLE = """\b
Examples:
  tuneforge report finance --db monitor.db --since 24h
  tuneforge report finance --db monitor.db --since 2024-05-01 --until 2024-05-02 --entity ACME --entity GLBX
  tuneforge report finance --db monitor.db --since 7d --bucket 1h --out reports/ --json

--since/--until: a duration back from the newest item (24h, 7d) or an ISO date/time."""


@click.group(name="finance", epilog=EXAMPLE)
def group():
    """Financial news monitor: entities, the monitor app, backtests, reports."""


@group.command(epilog=EXAMPLE)
@click.option("--config", "-c", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="monitor.toml")
@click.option("--once", is_flag=True, help="Exit when nothing is left to read now.")
@click.option("--dashboard", type=click.Choice(["auto", "on", "off"]), help="Live dashboard (default: config).")
@click.option("--no-dashboard", "dashboard", flag_value="off", help="Same as --dashboard off.")
@click.option("--speed", type=float, help="Replay speed: N x real time (0: as fast as possible).")
@click.option("--stdin", is_flag=True, help="Also read JSON lines from stdin.")
@click.option("--http-port", type=int, help="Serve POST /v1/events on this port.")
@click.option("--store", envvar="TUNEFORGE_STORE", metavar="URL",
              help="Keep the state in PostgreSQL instead of [state] db (postgresql://user@host/db[?schema=NAME]; "
                   "env TUNEFORGE_STORE; schema: ?schema=, else [state] schema, else finance_monitor).")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
def monitor(config_path, once, dashboard, speed, stdin, http_port, store, as_json):
    """Run the monitor (same as python -m tuneforge.apps.finance_monitor)."""
    from .run import run_monitor

    run_monitor(config_path, once=once, dashboard=dashboard, speed=speed, stdin=stdin, http_port=http_port,
                as_json=as_json, store=store)


@group.command(epilog=EXAMPLE)
@click.option("--text", "texts", multiple=True, required=True, help="A headline (repeatable).")
@click.option("--config", "-c", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="monitor.toml whose [watchlist] to use (default: cashtags only).")
def entities(texts, config_path):
    """Show the entities (cashtags, watchlist companies) found in each text, as JSON lines."""
    from .entities import Watchlist

    wl = Watchlist()
    if config_path:
        from .config import MonitorConfig

        wl = MonitorConfig.load(config_path).watchlist
    for text in texts:
        click.echo(json.dumps({"text": text, "entities": wl.find(text)}))


BACKFILL_EXAMPLE = """\b
Examples:
  tuneforge finance backfill --config my-monitor/monitor.toml --archive news-2024.jsonl --out scored/
  tuneforge finance backfill -c monitor.toml --archive big.jsonl --out scored/ --address ray://head:10001
  TUNEFORGE_STORE=postgresql://monitor@db/news tuneforge finance backfill -c monitor.toml --archive a.jsonl --out s/

Needs the ray extra (pip install 'tuneforge[ray]').  Rerun the same command after a crash: scored
parts in --out are kept, and items already in the state are skipped as duplicates."""


@group.command(epilog=BACKFILL_EXAMPLE)
@click.option("--config", "-c", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="monitor.toml (its bundle, rules, windows and state store).")
@click.option("--archive", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSONL or CSV news items (id, timestamp, text, ...).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the scored parts (kept: a rerun resumes).")
@click.option("--address", help="An existing Ray cluster (ray://HOST:10001); default: a local Ray.")
@click.option("--actors", type=click.IntRange(1), help="Scoring actors (default: one per CPU).")
@click.option("--sinks/--no-sinks", default=False, show_default=True,
              help="Send the alerts the archive raises to the configured sinks too (default: store only).")
@click.option("--store", envvar="TUNEFORGE_STORE", metavar="URL",
              help="The monitor's state in PostgreSQL instead of [state] db (env TUNEFORGE_STORE).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backfill(config_path, archive, out_dir, address, actors, sinks, store, as_json):
    """Score a news archive on Ray Data, then replay it into the monitor's state (windows, rules, alerts)."""
    from .backfill import backfill as run_backfill
    from .config import MonitorConfig

    config = MonitorConfig.load(config_path)
    if store:
        config.state_db = store   # as `finance monitor --store`
    report = run_backfill(config, archive, out_dir, address=address, actors=actors, sinks=sinks,
                          progress=lambda k: click.echo(f"part {k:05d} scored", err=True))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"{report.items} items in ({report.duplicates} duplicates, {report.late} late), {report.alerts} "
                   f"alerts; {report.scored_rows} texts scored on Ray ({report.skipped_parts} parts kept from a "
                   f"previous run), {report.fallback} scored here")


BACKTEST_EXAMPLE = """\b
Examples:
  tuneforge finance backtest --stream plugins/finance/data/backtest/test.jsonl \\
      --events plugins/finance/data/backtest/test-events.jsonl --bundle exports/finance-sentiment/v1
  tuneforge finance backtest --stream news.jsonl --events events.jsonl --config monitor.toml --out backtest/
  tuneforge finance backtest --stream s.jsonl --events e.jsonl --scorer gold --tolerance 3h --json

Without --config the rules are the template's defaults (tuneforge new app X --template finance-monitor)."""


@group.command(epilog=BACKTEST_EXAMPLE)
@click.option("--stream", "stream", required=True, type=click.Path(dir_okay=False),
              help="JSONL/CSV items replayed through the monitor.")
@click.option("--events", "events", required=True, type=click.Path(dir_okay=False),
              help="Labelled events, JSON lines {id, entity, start, end}.")
@click.option("--config", "-c", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="monitor.toml whose rules / windows / grace / dedup to test (default: the template's).")
@click.option("--bundle", type=click.Path(file_okay=False), help="finance-sentiment bundle to score with.")
@click.option("--variant", help="Bundle variant (int8, fp32, ...).")
@click.option("--scorer", type=click.Choice(["bundle", "keywords", "gold"]),
              help="gold: the bundled headlines' own labels (rules without model error).")
@click.option("--tolerance", default="2h", show_default=True,
              help="An alert up to this long after an event's end still matches it.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write backtest.json and a PNG timeline per entity here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backtest(stream, events, config_path, bundle, variant, scorer, tolerance, out_dir, as_json):
    """Replay a stream through the monitor's rules; precision, recall and delay against labelled events."""
    from .backtest import default_config, format_table, make_scorer, run_backtest
    from .durations import parse_duration

    try:
        tol = parse_duration(tolerance, "--tolerance")
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    config = default_config(config_path)
    result = run_backtest(stream, events, config, make_scorer(scorer, bundle, variant, config),
                          tolerance=tol, out_dir=out_dir)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"{result.events} labelled events, {result.entities} entities, {result.days:g} days, "
               f"scorer: {result.scorer}")
    click.echo(format_table(result))
    if result.missed:
        click.echo("missed: " + ", ".join(f"{m['id']} ({m['entity']} {m['start']}, size {m['size']})"
                                          for m in result.missed[:10]))
    if out_dir:
        click.echo(f"-> {out_dir}/backtest.json, {len(result.pngs)} timeline PNGs")


@group.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False),
              help="finance-sentiment bundle.")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False),
              help="Labelled CSV/JSONL (text, label: names or the Twitter 0/1/2); default: the bundled "
                   "Twitter validation file.")
@click.option("--variant", help="Bundle variant (int8, fp32, ...).")
@click.option("--json", "as_json", is_flag=True)
def calibrate(bundle, data_path, variant, as_json):
    """Fit the softmax temperature that calibrates sentiment_score on a labelled file ([model] temperature)."""
    import numpy as np

    from tuneforge.data import ColumnMap, load_dataset

    from . import DATA, LABELS
    from tuneforge.temperature import apply_temperature, ece, fit_temperature, nll
    from .scoring import ORDER, BundleScorer

    path = data_path or str(DATA / "valid.csv")
    ds = load_dataset(path, ColumnMap.from_dict({"text": "text", "label": "label"}), label_kind="single")
    names = [LABELS.get(e.label, e.label) for e in ds.examples]
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        raise click.UsageError(f"{path}: labels {unknown} are not negative / neutral / positive (or 0 / 1 / 2)")
    y = np.array([ORDER.index(n) for n in names])
    probs = BundleScorer.load(bundle, variant=variant).score([e.text for e in ds.examples])
    t = fit_temperature(probs, y)
    cal = apply_temperature(probs, t)
    out = {"data": path, "n": len(y), "temperature": t, "accuracy": round(float((probs.argmax(1) == y).mean()), 4),
           "nll": [round(nll(probs, y), 4), round(nll(cal, y), 4)], "ece": [round(ece(probs, y), 4),
                                                                           round(ece(cal, y), 4)]}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{out['n']} rows, accuracy {out['accuracy']:.4f}; temperature {t:g}: NLL {out['nll'][0]} -> "
               f"{out['nll'][1]}, ECE {out['ece'][0]} -> {out['ece'][1]}")
    click.echo(f"monitor.toml: [model] temperature = {t:g}")


def report_finance_command() -> click.Command:
    @click.command(name="finance", epilog=REPORT_EXAMPLE)
    @click.option("--db", default="monitor.db", show_default=True,
                  help="The monitor's state database ([state] db): a file, or a postgresql:// URL "
                       "(?schema=NAME when not finance_monitor).")
    @click.option("--since", help="Start: 24h / 7d back from the newest item, or an ISO date/time.")
    @click.option("--until", help="End (default: the newest item).")
    @click.option("--entity", "entity_list", multiple=True, help="Entity to draw (repeatable; default: the busiest).")
    @click.option("--top", default=6, show_default=True, type=int, help="Busiest entities drawn without --entity.")
    @click.option("--bucket", help="Bucket size, e.g. 15m or 1h (default: about 48 buckets).")
    @click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False))
    @click.option("--name", default="finance-report", show_default=True, help="File name (.png and .html).")
    @click.option("--json", "as_json", is_flag=True)
    def finance(db, since, until, entity_list, top, bucket, out_dir, name, as_json):
        """Sentiment trend and volume per entity with alerts marked: a PNG and a self-contained HTML page."""
        from .report import write_report

        report = write_report(db, out_dir, since=since, until=until, entities=list(entity_list) or None, top=top,
                              bucket=bucket, name=name)
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2))
        else:
            click.echo(f"{len(report.entities)} entities, {len(report.alerts)} alerts -> {report.png}, {report.html}")

    return finance


def register(cli: click.Group) -> None:
    cli.add_command(group)
    cli.commands["report"].add_command(report_finance_command())
