"""``monitor.toml``: typed, validated sections; paths relative to the config file's folder.

See ``docs/finance-monitor.md`` for every key.  Unknown keys are errors (a typo never
silently turns a rule off).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.storage import read_toml

from .durations import format_duration, parse_duration
from .entities import Watchlist
from .rules import Rule, rule_from_dict

DEFAULT_GRACE_S = 300.0   # [windows] grace default: 5 minutes of allowed lateness


def _check_keys(section: str, data: dict, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"[{section}] must be a table")
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"[{section}]: unknown key(s) {sorted(unknown)}",
                          hint="allowed: " + ", ".join(sorted(allowed)))


def _dur(section: str, key: str, value) -> float:
    try:
        return parse_duration(value, f"[{section}] {key}")
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass
class ModelConfig:
    """``bundle``: an exported finance-sentiment bundle; ``scorer = "keywords"``: a model-free
    word-list scorer for dry runs and tests (not a sentiment model)."""

    bundle: str | None = None
    variant: str | None = None
    scorer: str = "bundle"
    batch_size: int = 32
    threads: int | None = None
    topic_bundle: str | None = None
    topic_min_score: float = 0.0
    temperature: float = 1.0     # a further softmax temperature (the bundle's own fitted one is already applied)
    negative_at: float | None = None   # an item counts as negative when p(negative) >= this (None: top label)

    def __post_init__(self):
        if self.scorer not in ("bundle", "keywords"):
            raise ConfigError(f"[model] scorer must be 'bundle' or 'keywords', got {self.scorer!r}")
        if self.scorer == "bundle" and not self.bundle:
            raise ConfigError("[model] needs `bundle = \"exports/finance-sentiment\"`",
                              hint="or scorer = \"keywords\" for a model-free dry run")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("[model] batch_size must be a positive integer")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or \
                not 0.05 <= self.temperature <= 20:
            raise ConfigError(f"[model] temperature must be a number in [0.05, 20], got {self.temperature!r}",
                              hint="tuneforge finance calibrate --bundle DIR prints the fitted value")
        if self.negative_at is not None and (isinstance(self.negative_at, bool)
                                             or not isinstance(self.negative_at, (int, float))
                                             or not 0.0 < self.negative_at < 1.0):
            raise ConfigError(f"[model] negative_at must be a probability in (0, 1), got {self.negative_at!r}",
                              hint="leave it out to label each item with its most likely sentiment")


@dataclass
class IngestConfig:
    files: list[str] = field(default_factory=list)
    watch_dir: str | None = None
    stdin: bool = False
    speed: float = 0.0           # 0: as fast as possible; N: N seconds of stream time per wall second
    max_gap_s: float = 5.0       # replay: never wait longer than this between two items
    poll_s: float = 1.0
    chunk: int = 1024            # records read and scored together (length-sorted batches within it)
    dead_letter: str = "dead-letter.jsonl"
    follow: bool = False         # keep running after the files end (for the watch dir / stdin / HTTP)

    def __post_init__(self):
        if self.speed < 0 or self.max_gap_s < 0 or self.poll_s <= 0:
            raise ConfigError("[ingest] speed and max_gap_s must be >= 0 and poll_s > 0")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ConfigError("[ingest] chunk must be a positive integer")


@dataclass
class WebhookConfig:
    url: str
    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 5.0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"[sinks.webhook] url must start with http:// or https://, got {self.url!r}")
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0 or self.timeout_s <= 0:
            raise ConfigError("[sinks.webhook] retries, backoff_s, max_backoff_s must be >= 0, timeout_s > 0")


@dataclass
class SinksConfig:
    console: bool = True
    jsonl: str | None = None
    sqlite: str | None = None
    webhook: WebhookConfig | None = None


@dataclass
class HttpConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8088
    token: str | None = None


@dataclass
class DashboardConfig:
    enabled: str = "auto"        # auto: when stdout is a terminal
    top: int = 10
    refresh_s: float = 0.5
    alerts: int = 8

    def __post_init__(self):
        if self.enabled not in ("auto", "on", "off"):
            raise ConfigError("[dashboard] enabled must be auto, on or off")


@dataclass
class MetricsConfig:
    """``[metrics]``: the per-entity gauges on ``/metrics``.  Label cardinality is bounded: the
    watchlist's tickers plus the ``top_entities`` busiest others in ``window``; the rest are summed
    under ``entity="other"``."""

    top_entities: int = 10
    window: float | None = None     # None: the smallest window

    def __post_init__(self):
        if isinstance(self.top_entities, bool) or not isinstance(self.top_entities, int) or \
                not 0 <= self.top_entities <= 1000:
            raise ConfigError(f"[metrics] top_entities must be an integer in 0..1000, got {self.top_entities!r}")


@dataclass
class MonitorConfig:
    """Everything the monitor needs; build with :meth:`load` (TOML) or :meth:`from_dict`."""

    model: ModelConfig
    ingest: IngestConfig = field(default_factory=IngestConfig)
    state_db: str = "monitor.db"     # a file (SQLite) or a postgresql:// URL
    state_schema: str | None = None  # PostgreSQL: the store's schema (default finance_monitor)
    windows: list[float] = field(default_factory=lambda: [3600.0, 86400.0])
    grace: float = DEFAULT_GRACE_S   # [windows] grace: allowed lateness behind the stream clock
    rules: list[Rule] = field(default_factory=list)
    sinks: SinksConfig = field(default_factory=SinksConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    watchlist: Watchlist = field(default_factory=Watchlist)
    dedup: float = 0.0           # [alerts] dedup: at most one alert per key per this long (0: per rule only)
    base_dir: str = "."

    def __post_init__(self):
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"rule names must be unique, got {names}")
        if not self.windows or any(w <= 0 for w in self.windows):
            raise ConfigError("[windows] sizes must be positive durations")
        # every window a rule needs is kept
        self.windows = sorted(set(self.windows) | {w for r in self.rules for w in r.windows()})
        if isinstance(self.grace, bool) or not isinstance(self.grace, (int, float)) or self.grace < 0:
            raise ConfigError(f"[windows] grace must be a duration >= 0 like '5m', got {self.grace!r}")
        if self.grace >= self.windows[0]:
            raise ConfigError(f"[windows] grace ({format_duration(self.grace)}) must be shorter than the smallest "
                              f"window ({format_duration(self.windows[0])}): an item that late could not be "
                              "counted in it",
                              hint=f"set grace below {format_duration(self.windows[0])} "
                                   "(items later than the grace go to the dead-letter file)")
        self.grace = float(self.grace)
        if self.metrics.window is None:
            self.metrics.window = self.windows[0]
        elif self.metrics.window not in self.windows:
            raise ConfigError(f"[metrics] window {format_duration(self.metrics.window)} is not one of the windows "
                              f"({', '.join(format_duration(w) for w in self.windows)})",
                              hint="add it to [windows] sizes")

    def store_target(self) -> str | Path:
        """Where the state lives: the ``[state] db`` file beside the config, or its PostgreSQL URL."""
        from tuneforge.database import is_url

        return self.state_db if is_url(self.state_db) else self.path(self.state_db)

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def max_window(self) -> float:
        return max(self.windows)

    @classmethod
    def load(cls, path) -> "MonitorConfig":
        path = Path(path)
        data = read_toml(path)
        return cls.from_dict(data, base_dir=str(path.parent.resolve()))

    @classmethod
    def from_dict(cls, data: dict, base_dir: str = ".") -> "MonitorConfig":
        _check_keys("top level", data, {"model", "ingest", "state", "windows", "rules", "sinks", "http",
                                        "dashboard", "watchlist", "alerts", "metrics"})
        alerts = data.get("alerts", {})
        _check_keys("alerts", alerts, {"dedup"})
        model = data.get("model", {})
        _check_keys("model", model, set(ModelConfig.__dataclass_fields__))
        ingest = dict(data.get("ingest", {}))
        _check_keys("ingest", ingest, set(IngestConfig.__dataclass_fields__))
        if isinstance(ingest.get("files"), str):
            ingest["files"] = [ingest["files"]]
        if "max_gap_s" in ingest:
            ingest["max_gap_s"] = _dur("ingest", "max_gap_s", ingest["max_gap_s"])
        if "poll_s" in ingest:
            ingest["poll_s"] = _dur("ingest", "poll_s", ingest["poll_s"])
        state = data.get("state", {})
        _check_keys("state", state, {"db", "schema"})
        windows = data.get("windows", {})
        _check_keys("windows", windows, {"sizes", "grace"})
        sizes = [_dur("windows", "sizes", s) for s in windows.get("sizes", ["1h", "24h"])]
        grace = _dur("windows", "grace", windows.get("grace", DEFAULT_GRACE_S))
        rules_data = data.get("rules", [])
        if not isinstance(rules_data, list):
            raise ConfigError("rules must be an array of tables: [[rules]]")
        rules = [rule_from_dict(r, i) for i, r in enumerate(rules_data)]
        sinks = dict(data.get("sinks", {}))
        _check_keys("sinks", sinks, set(SinksConfig.__dataclass_fields__))
        if sinks.get("webhook") is not None:
            hook = sinks["webhook"]
            if isinstance(hook, str):
                hook = {"url": hook}
            _check_keys("sinks.webhook", hook, set(WebhookConfig.__dataclass_fields__))
            hook = dict(hook)
            for k in ("backoff_s", "max_backoff_s", "timeout_s"):
                if k in hook:
                    hook[k] = _dur("sinks.webhook", k, hook[k])
            sinks["webhook"] = WebhookConfig(**hook)
        metrics = dict(data.get("metrics", {}))
        _check_keys("metrics", metrics, set(MetricsConfig.__dataclass_fields__))
        if "window" in metrics:
            metrics["window"] = _dur("metrics", "window", metrics["window"])
        http = data.get("http", {})
        _check_keys("http", http, set(HttpConfig.__dataclass_fields__))
        dash = dict(data.get("dashboard", {}))
        _check_keys("dashboard", dash, set(DashboardConfig.__dataclass_fields__))
        if isinstance(dash.get("enabled"), bool):
            dash["enabled"] = "on" if dash["enabled"] else "off"
        try:
            return cls(model=ModelConfig(**model), ingest=IngestConfig(**ingest),
                       state_db=state.get("db", "monitor.db"), state_schema=state.get("schema"), windows=sizes, grace=grace, rules=rules,
                       sinks=SinksConfig(**sinks), http=HttpConfig(**http),
                       dashboard=DashboardConfig(**dash), metrics=MetricsConfig(**metrics),
                       watchlist=Watchlist.from_config(data.get("watchlist")),
                       dedup=_dur("alerts", "dedup", alerts.get("dedup", 0)), base_dir=base_dir)
        except TypeError as e:  # a value of the wrong type reaching a comparison
            raise ConfigError(f"monitor config: {e}") from None

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("rules", "watchlist")}
        out["rules"] = [r.to_dict() for r in self.rules]
        out["watchlist"] = self.watchlist.to_dict()
        from tuneforge.database import is_url, redact_url

        if is_url(self.state_db):
            out["state_db"] = redact_url(self.state_db)
        return out
