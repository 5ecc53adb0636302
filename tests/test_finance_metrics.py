"""The finance monitor on ``/metrics`` (issue 16): per-entity negative share and volume with bounded
label cardinality (watchlist + top-N + "other"), alerts by rule and severity, held-back alerts, late
and dead-lettered items -- registered in the app's ``context.metrics`` and served by core."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from test_finance_scenario import RULES

from tuneforge.plugins.finance.config import MonitorConfig
from tuneforge.plugins.finance.monitor import Monitor
from tuneforge.plugins.finance.scoring import KeywordScorer

T0 = 1_714_521_600.0
WATCH = """
[[watchlist.companies]]
ticker = "ACME"
name = "Acme Corp"

[[watchlist.companies]]
ticker = "GLBX"
name = "Globex"
"""


def config(tmp_path, top=2):
    path = tmp_path / "monitor.toml"
    path.write_text(f'[model]\nscorer = "keywords"\n[ingest]\ndead_letter = "dead.jsonl"\n[state]\ndb = "m.db"\n'
                    f'[windows]\nsizes = ["1h", "24h"]\ngrace = "5m"\n[metrics]\ntop_entities = {top}\n'
                    f'[sinks]\nconsole = false\n{RULES}\n{WATCH}')
    return path


def scrape(client, auth) -> dict:
    text = client.get("/metrics", headers=auth).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_have_bounded_entities_alerts_by_rule_and_late_items(tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.application import load_app
    from tuneforge.serve import create_server, new_registry

    path = config(tmp_path)
    events, i = [], 0
    volumes = {"ACME": 3, "AAA": 9, "BBB": 7, "CCC": 5, "DDD": 2, "EEE": 1}     # GLBX: none (still listed)
    for ticker, n in volumes.items():
        for k in range(n):
            text = f"${ticker} misses estimates" if k % 3 == 0 else f"${ticker} files its report"
            events.append({"id": f"e{i}", "timestamp": T0 + i * 30, "text": text})
            i += 1
    burst = [{"id": f"b{k}", "timestamp": T0 + 3000 + k * 20, "text": "$ACME plunges on fraud probe"}
             for k in range(10)]
    late = {"id": "late-1", "timestamp": T0 - 7200, "text": "$AAA slumps"}
    with Monitor(MonitorConfig.load(path), scorer=KeywordScorer()) as mon, TestClient(create_server(
            load_app("finance-monitor", path, registry := new_registry(), monitor=mon), registry=registry,
            token="t")) as client:
        auth = {"Authorization": "Bearer t"}
        before = scrape(client, auth)
        assert before[("tuneforge_finance_alerts_raised_total", (("rule", "negative-share"),
                                                                 ("severity", "warning")))] == 0
        mon.submit(events + burst)
        assert mon.submit([late, {"id": "bad"}])["late"] == 1
        m = scrape(client, auth)
        ents = {dict(k[1])["entity"]: v for k, v in m.items() if k[0] == "tuneforge_finance_entity_items"}
        assert ents == {"ACME": 13, "GLBX": 0, "AAA": 9, "BBB": 7, "other": 5 + 2 + 1}   # watchlist + top 2 + rest
        share = {dict(k[1])["entity"]: v for k, v in m.items()
                 if k[0] == "tuneforge_finance_entity_negative_share"}
        assert share["ACME"] == 11 / 13 and share["GLBX"] == 0 and share["AAA"] == 3 / 9
        assert share["other"] == (2 + 1 + 1) / 8
        assert {dict(k[1])["window"] for k in m if k[0] == "tuneforge_finance_entity_items"} == {"1h"}
        raised = {(dict(k[1])["rule"], dict(k[1])["severity"]): v for k, v in m.items()
                  if k[0] == "tuneforge_finance_alerts_raised_total"}
        alerts = mon.store.alerts()
        assert sum(raised.values()) == len(alerts) == m[("tuneforge_finance_alerts_total", ())] >= 1
        assert raised[(alerts[0]["rule"], alerts[0]["severity"])] >= 1
        held = sum(v for k, v in m.items() if k[0] == "tuneforge_finance_alerts_held_back_total")
        assert held == m[("tuneforge_finance_alerts_suppressed_total", ())] == mon.engine.suppressed
        assert m[("tuneforge_finance_items_total", (("outcome", "late"),))] == 1
        assert m[("tuneforge_finance_dead_lettered_total", (("kind", "late"),))] == 1
        assert m[("tuneforge_finance_dead_lettered_total", (("kind", "malformed"),))] == 1
        assert m[("tuneforge_finance_late_items", ())] == 1
        assert m[("tuneforge_finance_watermark_seconds", ())] == T0 + 3000 + 9 * 20 - 300


def test_entity_label_cardinality_stays_bounded_with_many_entities(tmp_path):
    with Monitor(MonitorConfig.load(config(tmp_path, top=3)), scorer=KeywordScorer()) as mon:
        mon.submit([{"id": f"x{i}", "timestamp": T0 + i, "text": f"$T{chr(65 + i % 26)}{chr(65 + i // 26)} news"}
                    for i in range(500)])
        rows = mon.entity_gauges()
        assert len(rows) == 2 + 3 + 1 and rows[-1][0] == "other"
        assert sum(n for _, n, _ in rows) == 500


def test_metrics_config_is_validated():
    import pytest

    from tuneforge.errors import ConfigError

    base = {"model": {"scorer": "keywords"}}
    assert MonitorConfig.from_dict(base).metrics.window == 3600.0          # default: the smallest window
    assert MonitorConfig.from_dict({**base, "metrics": {"window": "24h"}}).metrics.window == 86400.0
    with pytest.raises(ConfigError, match=r"\[metrics\] window 2h is not one of the windows \(1h, 1d\)"):
        MonitorConfig.from_dict({**base, "metrics": {"window": "2h"}})
    with pytest.raises(ConfigError, match="top_entities must be an integer"):
        MonitorConfig.from_dict({**base, "metrics": {"top_entities": -1}})
