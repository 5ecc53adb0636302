"""{{name}}: the sample stream through the monitor (keyword scorer, so no model is needed)."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.monitor import Monitor
from tuneforge.plugins.finance.scoring import KeywordScorer

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path):
    cfg = MonitorConfig.load(ROOT / "monitor.toml")
    cfg.state_db = str(tmp_path / "monitor.db")
    cfg.ingest.dead_letter = str(tmp_path / "dead-letter.jsonl")
    cfg.sinks.console, cfg.sinks.webhook = False, None
    cfg.sinks.jsonl, cfg.sinks.sqlite = str(tmp_path / "alerts.jsonl"), None
    return cfg


def test_sample_stream_raises_one_alert_for_acme_and_none_after_restart(tmp_path):
    cfg = config(tmp_path)
    with Monitor(cfg, scorer=KeywordScorer()) as mon:
        stats = mon.run()
    lines = (ROOT / "data" / "news.jsonl").read_text().splitlines()
    assert stats.scored == len(lines)
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a["key"] for a in alerts] == ["ACME"]
    burst = [json.loads(x) for x in lines if json.loads(x)["id"].startswith("b")]
    assert alerts[0]["time"] >= burst[0]["timestamp"]
    with Monitor(cfg, scorer=KeywordScorer()) as mon:   # restart: everything was read, nothing repeats
        assert mon.run().scored == 0
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1
