"""Alert backtest: replay a stream through the monitor (the same :class:`Monitor`, sources, windows,
rules, alert engine and store as a live run -- only the state folder is temporary and the sinks are
off) and score its alerts against labelled events.

    tuneforge finance backtest --stream tune.jsonl --events tune-events.jsonl --bundle exports/fin/v1

An alert for entity E at stream time t *matches* a labelled event of E when
``start <= t <= end + tolerance``.  Per rule and overall:

* precision: matching alerts / alerts (entity alerts only; ``*`` and topic keys are reported apart)
* recall: events with at least one matching alert / events
* each with its 95 % Wilson interval (``precision_ci`` / ``recall_ci``): 30 events leave a wide one
* detection delay: first matching alert - event start (median, and p90)
* alerts per entity per day: alerts / (entities with items x days the stream spans)
* suppressed: alerts the cooldown (or ``[alerts] dedup``) held back, per rule

Labels are JSON lines ``{"id", "entity", "start", "end", "size"?}`` (ISO or epoch times).
"""

from __future__ import annotations

import copy
import json
import re
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.errors import UsageError
from tuneforge.metrics import wilson_interval

from .durations import iso, parse_timestamp
from .entities import TICKER

DAY = 86400.0


@dataclass
class LabelledEvent:
    """A negative event about ``entity`` from ``start`` to ``end`` (stream time, epoch seconds)."""

    id: str
    entity: str
    start: float
    end: float
    size: int = 0              # negative items injected (informational)

    def __post_init__(self):
        self.entity = str(self.entity).upper().lstrip("$")
        if not TICKER.match(self.entity):
            raise ValueError(f"entity {self.entity!r} is not a ticker")
        if self.end < self.start:
            raise ValueError("end is before start")


def read_events(path) -> list[LabelledEvent]:
    """Labelled events from a JSONL file; a bad line is a :class:`UsageError` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"labels file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(LabelledEvent(id=str(d.get("id", f"event-{n}")), entity=d["entity"],
                                     start=parse_timestamp(d["start"]), end=parse_timestamp(d.get("end", d["start"])),
                                     size=int(d.get("size", 0))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise UsageError(f"{path}:{n}: not a labelled event ({what})",
                             hint='one JSON object per line: {"id", "entity", "start", "end"}') from None
    return out


class CachedScorer:
    """Memoises a scorer by text (a benchmark stream repeats headlines; tuning replays it many times)."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.cache: dict[str, np.ndarray] = {}

    def score(self, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            for t, p in zip(todo, np.asarray(self.scorer.score(todo), dtype=np.float32)):
                self.cache[t] = p
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 3), dtype=np.float32)

    def describe(self) -> str:
        inner = getattr(self.scorer, "describe", None)
        return inner() if inner else type(self.scorer).__name__


_URL = re.compile(r"https?://\S+")
_CASHTAG = re.compile(r"\$[A-Za-z][A-Za-z.]{0,7}\b")


def clean_headline(text: str) -> str:
    """A headline without links and cashtags (the benchmark puts its own entity's cashtag in front)."""
    text = _CASHTAG.sub(" ", _URL.sub(" ", text))
    text = re.sub(r"\s+", " ", text).strip(" -:,;|")
    return text.strip()


class GoldScorer:
    """The labelled sentiment of the benchmark's headlines (``$TICK - <headline>``) as one-hot
    probabilities: the rules measured without model error.  Unknown texts are neutral."""

    def __init__(self, labelled: dict[str, str]):
        self.labelled = labelled

    @classmethod
    def from_csv(cls, path) -> "GoldScorer":
        import csv

        names = {"0": "negative", "1": "positive", "2": "neutral"}
        with open(path, encoding="utf-8") as f:
            return cls({clean_headline(r["text"]): names.get(r["label"], r["label"]) for r in csv.DictReader(f)})

    def score(self, texts: list[str]) -> np.ndarray:
        order = ("negative", "neutral", "positive")
        out = np.zeros((len(texts), 3), dtype=np.float32)
        for i, t in enumerate(texts):
            label = self.labelled.get(clean_headline(t), "neutral")
            out[i, order.index(label)] = 1.0
        return out

    def describe(self) -> str:
        return "gold labels (the headlines' own annotations; no model)"


@dataclass
class Replay:
    """What the monitor did with the stream."""

    alerts: list[dict]
    suppressed: dict[tuple[str, str], int]
    stats: dict
    since: float
    until: float
    series: dict[str, list[tuple[float, int]]]     # entity -> [(ts, label)]


def replay(stream, config, scorer) -> Replay:
    """Run ``stream`` through a :class:`Monitor` built from ``config`` (its rules, windows, grace,
    dedup, watchlist), with a throw-away state folder and no sinks."""
    from .monitor import ALL, Monitor

    stream = Path(stream)
    if not stream.is_file():
        raise UsageError(f"stream file {stream} does not exist")
    with tempfile.TemporaryDirectory(prefix="tuneforge-backtest-") as tmp:
        cfg = copy.deepcopy(config)
        cfg.base_dir = tmp
        cfg.state_db = "monitor.db"
        cfg.ingest.files, cfg.ingest.watch_dir, cfg.ingest.stdin = [str(stream.resolve())], None, False
        cfg.ingest.speed, cfg.ingest.follow, cfg.ingest.dead_letter = 0.0, False, "dead-letter.jsonl"
        cfg.http.enabled = False
        with Monitor(cfg, scorer=scorer, sinks=[]) as mon:
            mon.run()
            since, until = mon.store.time_range()
            if since is None:
                raise UsageError(f"{stream} has no valid items")
            series: dict[str, list[tuple[float, int]]] = {}
            for key, ts, label, _ in mon.store.key_series(since, until):
                if key != ALL and not key.startswith("topic:"):
                    series.setdefault(key, []).append((ts, int(label)))
            return Replay(mon.store.alerts(), dict(mon.engine.suppressed_by), mon.status()["stats"], since, until,
                          series)


@dataclass
class RuleScore:
    alerts: int
    matched: int
    precision: float | None
    recall: float
    detected: int
    median_delay_s: float | None
    p90_delay_s: float | None
    alerts_per_entity_day: float
    false_per_entity_day: float
    suppressed: dict[str, int] = field(default_factory=dict)
    precision_ci: tuple[float, float] | None = None      # 95 % Wilson interval
    recall_ci: tuple[float, float] | None = None


@dataclass
class BacktestResult:
    events: int
    entities: int
    days: float
    tolerance_s: float
    overall: RuleScore
    rules: dict[str, RuleScore]
    missed: list[dict]
    false_alerts: list[dict]
    other_alerts: int                    # alerts on "*" / topic keys (not scored)
    stats: dict
    scorer: str = ""
    pngs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _score(alerts: list[dict], events: list[LabelledEvent], tolerance: float, entity_days: float,
           suppressed: dict[str, int]) -> tuple[RuleScore, set[str], list[dict]]:
    by_entity: dict[str, list[LabelledEvent]] = {}
    for e in events:
        by_entity.setdefault(e.entity, []).append(e)
    first: dict[str, float] = {}
    false, matched = [], 0
    for a in alerts:
        hits = [e for e in by_entity.get(a["key"], []) if e.start <= a["ts"] <= e.end + tolerance]
        if hits:
            matched += 1
            for e in hits:
                first[e.id] = min(first.get(e.id, a["ts"]), a["ts"])
        else:
            false.append(a)
    starts = {e.id: e.start for e in events}
    delays = sorted(first[i] - starts[i] for i in first)
    n = len(alerts)
    score = RuleScore(alerts=n, matched=matched, precision=round(matched / n, 4) if n else None,
                      recall=round(len(first) / len(events), 4) if events else 0.0, detected=len(first),
                      median_delay_s=round(statistics.median(delays), 1) if delays else None,
                      p90_delay_s=round(float(np.percentile(delays, 90)), 1) if delays else None,
                      alerts_per_entity_day=round(n / entity_days, 4) if entity_days else 0.0,
                      false_per_entity_day=round(len(false) / entity_days, 4) if entity_days else 0.0,
                      suppressed=suppressed, precision_ci=_ci(matched, n), recall_ci=_ci(len(first), len(events)))
    return score, set(first), false


def _ci(k: int, n: int) -> tuple[float, float] | None:
    ci = wilson_interval(k, n)
    return None if ci is None else (round(ci[0], 3), round(ci[1], 3))


def evaluate(rep: Replay, events: list[LabelledEvent], tolerance: float = 7200.0, rule_names=()) -> BacktestResult:
    entity_alerts = [a for a in rep.alerts if a["key"] != "*" and not a["key"].startswith("topic:")]
    entities = len(rep.series)
    days = max((rep.until - rep.since) / DAY, 1 / 24)
    entity_days = entities * days
    supp: dict[str, dict[str, int]] = {}
    for (rule, why), n in rep.suppressed.items():
        supp.setdefault(rule, {})[why] = n
    total_supp: dict[str, int] = {}
    for d in supp.values():
        for why, n in d.items():
            total_supp[why] = total_supp.get(why, 0) + n
    overall, detected, false = _score(entity_alerts, events, tolerance, entity_days, total_supp)
    rules = {}
    for name in dict.fromkeys(list(rule_names) + [a["rule"] for a in entity_alerts]):
        rules[name] = _score([a for a in entity_alerts if a["rule"] == name], events, tolerance, entity_days,
                             supp.get(name, {}))[0]
    missed = [{"id": e.id, "entity": e.entity, "start": iso(e.start), "size": e.size}
              for e in events if e.id not in detected]
    return BacktestResult(events=len(events), entities=entities, days=round(days, 3), tolerance_s=tolerance,
                          overall=overall, rules=rules, missed=missed,
                          false_alerts=[{k: a[k] for k in ("time", "rule", "key", "value", "message")} for a in false],
                          other_alerts=len(rep.alerts) - len(entity_alerts), stats=rep.stats)


def draw_timelines(rep: Replay, events: list[LabelledEvent], out_dir, tolerance: float = 7200.0,
                   bucket_s: float = 3600.0, entities: list[str] | None = None) -> list[str]:
    """One PNG per entity: items and negative items per bucket, labelled events shaded, alerts as
    lines (green: matched an event, red: false)."""
    from datetime import datetime, timezone

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from tuneforge.storage import atomic_write

    out = Path(out_dir)
    paths = []
    dt = lambda t: datetime.fromtimestamp(t, tz=timezone.utc)  # noqa: E731
    n_buckets = max(1, int((rep.until - rep.since) // bucket_s) + 1)
    for key in entities or sorted(rep.series):
        vol, neg = np.zeros(n_buckets), np.zeros(n_buckets)
        for ts, label in rep.series.get(key, []):
            i = min(int((ts - rep.since) // bucket_s), n_buckets - 1)
            vol[i] += 1
            neg[i] += label == 0
        x = [dt(rep.since + i * bucket_s) for i in range(n_buckets)]
        fig, ax = plt.subplots(figsize=(12, 2.8))
        width = bucket_s / DAY
        ax.bar(x, vol, width=width, align="edge", color="#bdc3c7", label="items")
        ax.bar(x, neg, width=width, align="edge", color="#e74c3c", label="negative")
        mine = [e for e in events if e.entity == key]
        for e in mine:
            ax.axvspan(dt(e.start), dt(e.end), color="#f39c12", alpha=0.3)
        for a in rep.alerts:
            if a["key"] != key:
                continue
            ok = any(e.start <= a["ts"] <= e.end + tolerance for e in mine)
            ax.axvline(dt(a["ts"]), color="#27ae60" if ok else "#c0392b", lw=1.2, ls="--")
        ax.set_title(f"{key}: {len(rep.series.get(key, []))} items, {len(mine)} labelled events (shaded), "
                     f"alerts dashed (green matched, red false)", fontsize=9, loc="left")
        ax.set_ylabel(f"items / {int(bucket_s // 60)} min", fontsize=8)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        path = out / f"timeline-{key}.png"
        atomic_write(path, buf.getvalue())
        paths.append(str(path))
    return paths


def run_backtest(stream, events_path, config, scorer, *, tolerance: float = 7200.0, out_dir=None,
                 png: bool = True) -> BacktestResult:
    """Replay + evaluate (+ PNG timelines and ``backtest.json`` in ``out_dir``)."""
    events = read_events(events_path)
    rep = replay(stream, config, scorer)
    result = evaluate(rep, events, tolerance, [r.name for r in config.rules])
    result.scorer = scorer.describe() if hasattr(scorer, "describe") else type(scorer).__name__
    if out_dir is not None:
        from tuneforge.storage import write_json

        if png:
            result.pngs = draw_timelines(rep, events, out_dir, tolerance)
        write_json(Path(out_dir) / "backtest.json", result.to_dict())
    return result


def format_table(result: BacktestResult) -> str:
    """The per-rule and overall scores as a Markdown table."""
    def ci(c) -> str:
        return "" if c is None else f" [{c[0]:.2f}, {c[1]:.2f}]"

    def row(name, s: RuleScore) -> str:
        p = "-" if s.precision is None else f"{s.precision:.3f}{ci(s.precision_ci)}"
        d = "-" if s.median_delay_s is None else f"{s.median_delay_s / 60:.0f} min"
        supp = ", ".join(f"{k} {v}" for k, v in sorted(s.suppressed.items())) or "0"
        return (f"| {name} | {s.alerts} | {p} | {s.recall:.3f} ({s.detected}/{result.events}){ci(s.recall_ci)} | "
                f"{d} | {s.alerts_per_entity_day:.3f} | {supp} |")

    lines = ["| rule | alerts | precision [95 % CI] | recall [95 % CI] | median delay | alerts / entity / day | suppressed |",
             "|---|---|---|---|---|---|---|"]
    lines += [row(name, s) for name, s in result.rules.items()]
    lines.append(row("**overall**", result.overall))
    return "\n".join(lines)


def default_config(config_path=None):
    """The rules, windows and dedup of ``config_path``, or of the template's ``monitor.toml`` (the
    shipped defaults: its rules and its ``[model] negative_at`` / ``temperature``) without its
    watchlist; the scorer is passed separately."""
    from tuneforge.storage import read_toml

    from . import TEMPLATES
    from .config import MonitorConfig

    if config_path is not None:
        return MonitorConfig.load(config_path)
    data = read_toml(TEMPLATES / "finance-monitor" / "monitor.toml")
    # the scorer is replaced by the one the caller passes; how its output is read stays the template's
    data["model"] = {"scorer": "keywords", **{k: v for k, v in data.get("model", {}).items()
                                             if k in ("negative_at", "temperature")}}
    data.pop("watchlist", None)
    data["sinks"] = {"console": False}
    return MonitorConfig.from_dict(data)


def make_scorer(kind: str | None, bundle=None, variant: str | None = None, config=None, threads: int | None = None):
    """``bundle`` (an exported finance-sentiment bundle), ``keywords``, ``gold`` (the bundled
    headlines' labels), or None: the config's own ``[model]``."""
    from .scoring import BundleScorer, KeywordScorer, scorer_from_config

    if kind is None and bundle is None and config is not None and config.model.bundle:
        return CachedScorer(scorer_from_config(config.model, config.path))
    kind = kind or ("bundle" if bundle else None)
    if kind == "keywords":
        return KeywordScorer()
    if kind == "gold":
        from . import DATA

        return GoldScorer.from_csv(DATA / "valid.csv")
    if kind == "bundle" and bundle:
        return CachedScorer(BundleScorer.load(bundle, variant=variant, threads=threads))
    raise UsageError("backtest needs a scorer: --bundle exports/finance-sentiment/vN, --scorer keywords, "
                     "--scorer gold, or --config with a [model] bundle")
