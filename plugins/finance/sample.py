"""Synthetic news streams for demos, tests and benchmarks: a calm stream and an injected burst.

The calm stream cycles each company through positive / neutral / negative headlines (a fifth
negative, evenly spread), one item every ``step_s``; the burst adds ``burst_n`` negative
headlines about one company, one every ``burst_step_s``, starting at ``burst_at`` (a fraction
of the stream).  Deterministic for a given ``seed``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .durations import iso

COMPANIES = [
    {"ticker": "ACME", "name": "Acme Corp", "aliases": ["Acme"]},
    {"ticker": "GLBX", "name": "Globex", "aliases": ["Globex Corporation"]},
    {"ticker": "INIT", "name": "Initech", "aliases": []},
    {"ticker": "UMBR", "name": "Umbrella", "aliases": ["Umbrella Corp"]},
    {"ticker": "HOOL", "name": "Hooli", "aliases": []},
]
POSITIVE = ["{name} beats quarterly estimates as revenue rises", "${t} upgraded to buy at a major broker",
            "{name} shares rally after record orders", "{name} raises full-year guidance on strong growth"]
NEUTRAL = ["{name} to present at an industry conference next week", "${t} annual meeting scheduled for June",
           "{name} names a new head of investor relations", "{name} files its quarterly report"]
NEGATIVE = ["{name} misses estimates and cuts its outlook", "${t} downgraded on weak demand",
            "{name} shares fall after a regulatory probe", "{name} faces lawsuit over product recall"]
BURST = ["{name} plunges as auditors flag accounting fraud", "${t} crashes: CFO resigns amid fraud probe",
         "{name} halts trading after fraud investigation widens", "Analysts slash {name} targets, shares tumble",
         "{name} warns of default as lenders pull credit lines", "${t} sinks on bankruptcy warning"]
# one in five negative, spread out
CYCLE = ["pos", "neu", "neg", "neu", "pos"]


def make_stream(n: int = 600, *, start: float = 1_714_550_400.0, step_s: float = 120.0, companies=None,
                burst_ticker: str | None = None, burst_at: float = 0.6, burst_n: int = 12,
                burst_step_s: float = 60.0, seed: int = 0) -> list[dict]:
    """Items (dicts with id, timestamp (ISO), text, source), in timestamp order."""
    rng = random.Random(seed)
    companies = companies or COMPANIES
    pools = {"pos": POSITIVE, "neu": NEUTRAL, "neg": NEGATIVE}
    items = []
    for i in range(n):
        c = companies[i % len(companies)]
        kind = CYCLE[(i // len(companies)) % len(CYCLE)]
        text = rng.choice(pools[kind]).format(name=c["name"], t=c["ticker"])
        items.append({"id": f"n{i:06d}", "ts": start + i * step_s, "text": text, "source": "wire"})
    if burst_ticker:
        c = next(c for c in companies if c["ticker"] == burst_ticker)
        t0 = start + int(n * burst_at) * step_s + step_s / 2
        for j in range(burst_n):
            text = BURST[j % len(BURST)].format(name=c["name"], t=c["ticker"])
            items.append({"id": f"b{j:04d}", "ts": t0 + j * burst_step_s, "text": text, "source": "wire"})
        items.sort(key=lambda d: (d["ts"], d["id"]))
    for d in items:
        d["timestamp"] = iso(d.pop("ts"))
    return items


def write_jsonl(items: list[dict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in items), encoding="utf-8")
    return path


def watchlist_toml(companies=None) -> str:
    out = []
    for c in companies or COMPANIES:
        out.append(f'[[watchlist.companies]]\nticker = "{c["ticker"]}"\nname = "{c["name"]}"\n'
                   f'aliases = {json.dumps(c["aliases"])}\n')
    return "\n".join(out)
