"""The finance monitor's labelled benchmark stream (issue 16): real headlines, injected dated negative
events of known entity and size, noise bursts that are not events, calm stretches.  Seeded.

    python bench/finance_backtest_stream.py                    # writes plugins/finance/data/backtest/
    python bench/finance_backtest_stream.py --out /tmp/bt --days 10 --seed 7
    python bench/finance_backtest_stream.py --out /tmp/bt4 --replicas 4     # a 5x larger tune half
    python bench/finance_backtest_stream.py --out /tmp/fresh --only-replicas 5-12   # 240 events kept out of it
    python bench/finance_backtest_stream.py --out /tmp/held --only-replicas 1-10 --replica-half test  # 300 held out

``--replicas N``: the ``tune`` file gets N more copies of the tune half's *structure* drawn afresh
(other seeds: rates, events, noise, times) from the *same* tune headline pool, each on its own
entities (``ACME`` -> ``ACMEB``, ``ACMEC``, ...), merged in time order: 30 x (N + 1) labelled events to
choose rule settings on, so a choice rests on more than 30 events.  The ``test`` half is unchanged.
``--replica-half test`` draws the copies of the *test* half instead (its own headline pool and seeds,
never one a tune copy uses): with ``--only-replicas A-B``, a held-out set many times larger than the
shipped 30 events, to report on after every choice is made (``bench/finance_backtest_halves.py``).

Headlines: the Twitter financial news validation set bundled with the plugin
(``plugins/finance/data/valid.csv``, MIT, zeroshot 2022) -- not the training file, so a model trained
on the bundled train.csv has not seen them.  Links and cashtags are removed and the stream's own
entity is put in front (``$ACME - <headline>``); the headline keeps its annotated sentiment.

Two halves, ``tune`` and ``test``, with *disjoint* headline pools (the validation set shuffled with
the seed and cut in two) and their own seeds and dates: tune the rule thresholds on ``tune``, report
``test``.  Each half (defaults): 10 fictional entities over 10 days.

* background: per entity a Poisson stream (0.4 - 2.4 items/h), busier in US market hours, quieter at
  night and at weekends; the entity's daily negative share drifts (Beta around 14 %); one or two
  *calm* days per entity at a fifth of the rate
* events (labelled, ``<half>-events.jsonl``): 3 per entity, a burst of ``size`` negative headlines
  (log-uniform 5 - 30) over 20 min - 3 h (front-loaded), with a fifth as many non-negative items mixed in
* noise (not events, ``<half>-noise.jsonl`` for reference): 3 per entity -- busy news days (10 - 40
  items, mostly neutral/positive, background negative share) and controversies (8 - 20 items,
  30 - 45 % negative); plus a few isolated negative items

Nothing overlaps within 8 h for one entity, so each labelled event is unambiguous.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import _tf_path  # noqa: E402,F401  (the worktree's tuneforge)

from tuneforge.plugins.finance.backtest import clean_headline  # noqa: E402
from tuneforge.plugins.finance.durations import iso, parse_timestamp  # noqa: E402

DATA = ROOT / "plugins" / "finance" / "data" / "valid.csv"
OUT = ROOT / "plugins" / "finance" / "data" / "backtest"
ENTITIES = ["ACME", "GLBX", "INIT", "UMBR", "HOOL", "STRK", "WAYN", "CYBD", "OSCP", "TYRL", "SOYL", "VNDL"]
NAMES = {"0": "neg", "1": "pos", "2": "neu"}
HALVES = {"tune": ("2024-03-04T00:00:00Z", 1), "test": ("2024-04-01T00:00:00Z", 2)}
HOUR = 3600.0


def pools(seed: int) -> dict[str, dict[str, list[str]]]:
    rows = []
    with open(DATA, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            text = clean_headline(r["text"])
            if len(text) >= 20:
                rows.append((text, NAMES[r["label"]]))
    rows = sorted(dict(rows).items())      # one label per cleaned text
    random.Random(seed).shuffle(rows)
    out = {}
    for half, part in (("tune", rows[0::2]), ("test", rows[1::2])):
        out[half] = {k: [t for t, lab in part if lab == k] for k in ("neg", "neu", "pos")}
    return out


def rate_factor(ts: float) -> float:
    hour = (ts % 86400) / HOUR
    weekday = int((ts // 86400 + 3) % 7) < 5          # 1970-01-01 was a Thursday
    day = 1.7 if 13 <= hour < 21 else (0.9 if 7 <= hour < 13 or 21 <= hour < 23 else 0.35)
    return day * (1.0 if weekday else 0.35)


def poisson_times(rng: random.Random, t0: float, t1: float, rate_per_h, cap: float) -> list[float]:
    """Thinning: a Poisson process with rate ``rate_per_h(ts)`` <= ``cap`` items/h."""
    out, t = [], t0
    while True:
        t += rng.expovariate(cap / HOUR)
        if t >= t1:
            return out
        if rng.random() < rate_per_h(t) / cap:
            out.append(t)


def free_slot(rng, busy: list[tuple[float, float]], t0: float, t1: float, length: float, gap: float = 8 * HOUR):
    for _ in range(1000):
        s = rng.uniform(t0 + 30 * HOUR, t1 - length - 6 * HOUR)       # a day of warm-up for the baselines
        if all(s + length + gap <= b0 or s >= b1 + gap for b0, b1 in busy):
            busy.append((s, s + length))
            return s
    raise RuntimeError("no free slot: fewer events or more days")


def make_half(half: str, pool: dict[str, list[str]], *, days: int, entities: list[str], seed: int,
              events_per_entity: int = 3, noise_per_entity: int = 3, tag: str = ""):
    rng = random.Random(seed)
    t0 = parse_timestamp(HALVES[half][0])
    t1 = t0 + days * 86400
    items, events, noise = [], [], []

    def add(ts, entity, kind, why):
        items.append((ts, entity, rng.choice(pool[kind]), why))

    for entity in entities:
        base = rng.uniform(0.4, 2.4)
        calm_days = set(rng.sample(range(days), rng.randint(1, 2)))
        day_neg = [min(max(rng.betavariate(2.5, 15), 0.02), 0.35) for _ in range(days)]

        def rate(ts, base=base, calm_days=calm_days):
            d = int((ts - t0) // 86400)
            return base * rate_factor(ts) * (0.2 if d in calm_days else 1.0)

        for ts in poisson_times(rng, t0, t1, rate, cap=base * 1.7):
            p_neg = day_neg[int((ts - t0) // 86400)]
            u = rng.random()
            kind = "neg" if u < p_neg else ("pos" if u < p_neg + (1 - p_neg) * 0.26 else "neu")
            add(ts, entity, kind, "background")
        busy: list[tuple[float, float]] = []
        for k in range(events_per_entity):
            size = int(round(math.exp(rng.uniform(math.log(5), math.log(30)))))
            length = rng.uniform(20 * 60, 3 * HOUR)
            start = free_slot(rng, busy, t0, t1, length)
            times = sorted(start + length * rng.random() ** 1.6 for _ in range(size))   # front-loaded
            times[0] = start
            for ts in times:
                add(ts, entity, "neg", "event")
            for _ in range(max(0, round(size / 5 * rng.uniform(0.5, 1.5)))):
                add(start + length * rng.random(), entity, rng.choice(["neu", "neu", "pos"]), "event-other")
            events.append({"id": f"{half}-{entity}-{k + 1}", "entity": entity, "start": iso(times[0]),
                           "end": iso(times[-1]), "size": size, "duration_min": round((times[-1] - start) / 60)})
        for k in range(noise_per_entity):
            kind = rng.choice(["busy-day", "busy-day", "controversy"])
            if kind == "busy-day":
                n, length, p_neg = rng.randint(10, 40), rng.uniform(HOUR, 3 * HOUR), rng.uniform(0.05, 0.2)
            else:
                n, length, p_neg = rng.randint(8, 20), rng.uniform(HOUR, 4 * HOUR), rng.uniform(0.3, 0.45)
            start = free_slot(rng, busy, t0, t1, length)
            n_neg = round(n * p_neg)
            for j in range(n):
                label = "neg" if j < n_neg else rng.choice(["neu", "neu", "pos"])
                add(start + length * rng.random(), entity, label, kind)
            noise.append({"id": f"{half}-{entity}-noise-{k + 1}", "entity": entity, "kind": kind,
                          "start": iso(start), "end": iso(start + length), "items": n, "negative": n_neg})
        for _ in range(rng.randint(1, 3)):                          # isolated negative items
            add(rng.uniform(t0, t1), entity, "neg", "isolated")
    items.sort(key=lambda r: (r[0], r[1]))
    rows = [{"id": f"{half[:2]}{tag}{i:06d}", "timestamp": iso(ts), "text": f"${entity} - {text}"}
            for i, (ts, entity, text, _) in enumerate(items)]
    events.sort(key=lambda e: e["start"])
    noise.sort(key=lambda e: e["start"])
    return rows, events, noise


def write_jsonl(rows, path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--entities", type=int, default=10)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--replicas", type=int, default=0,
                        help="add this many re-drawn copies of the tune half (same headline pool, own entities)")
    parser.add_argument("--only-replicas", metavar="A-B",
                        help="the tune file holds copies A..B alone (not the tune half itself): events kept out of a "
                             "search, e.g. 5-12 beside a search on --replicas 4")
    parser.add_argument("--replica-half", choices=sorted(HALVES), default="tune",
                        help="the half whose structure and headline pool the copies are drawn from (its file holds "
                             "them; default tune)")
    args = parser.parse_args()
    if not 0 <= args.replicas <= 25:
        parser.error("--replicas must be between 0 and 25")
    copies = range(1, args.replicas + 1)
    if args.only_replicas:
        try:
            first, last = (int(v) for v in args.only_replicas.split("-"))
        except ValueError:
            parser.error(f"--only-replicas takes A-B (two numbers), got {args.only_replicas!r}")
        if not 1 <= first <= last <= 25:
            parser.error("--only-replicas: need 1 <= A <= B <= 25")
        copies = range(first, last + 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = pools(args.seed)
    summary = {}
    for half, (_, offset) in HALVES.items():
        rows, events, noise = make_half(half, split[half], days=args.days, entities=ENTITIES[:args.entities],
                                        seed=args.seed * 100 + offset)
        if half == args.replica_half:
            if args.only_replicas:
                rows, events, noise = [], [], []
            for k in copies:
                suffix = chr(ord("A") + k)
                more = make_half(half, split[half], days=args.days, seed=args.seed * 100 + offset + 1000 * k,
                                 entities=[e + suffix for e in ENTITIES[:args.entities]], tag=suffix)
                rows, events, noise = (sorted(a + b, key=lambda r: (r.get("timestamp") or r["start"], r["id"]))
                                       for a, b in zip((rows, events, noise), more))
        write_jsonl(rows, out / f"{half}.jsonl")
        write_jsonl(events, out / f"{half}-events.jsonl")
        write_jsonl(noise, out / f"{half}-noise.jsonl")
        summary[half] = {"items": len(rows), "events": len(events), "noise_bursts": len(noise),
                         "headlines": {k: len(v) for k, v in split[half].items()}}
    print(json.dumps({"seed": args.seed, "days": args.days, "entities": args.entities, **summary}, indent=2))


if __name__ == "__main__":
    main()
