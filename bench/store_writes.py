"""Turns written per second by the support bot's Store: SQLite (bot.sqlite) beside PostgreSQL.

    python bench/store_writes.py --store postgresql://user@host/db --turns 2000 --threads 1 8

Each turn is what a served chat turn writes: ``add_turn`` (masked by tuneforge.pii) and
``turn_ref``.  SQLite goes to a temp file; PostgreSQL to a fresh schema, dropped after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tuneforge.plugins.support_bot.store import Store

TEXT = "my card 4111 1111 1111 1111 has not arrived yet, can you check? mail jane@example.com"


def run(store: Store, turns: int, threads: int) -> float:
    sessions = [store.new_session() for _ in range(threads)]

    def work(k: int) -> None:
        for i in range(turns // threads):
            t = store.add_turn(sessions[k], TEXT, "It is on its way.", "template", "card_arrival", 0.9)
            store.turn_ref(t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return (turns // threads * threads) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", help="postgresql:// URL (omit: SQLite only)")
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    out = {}
    for threads in args.threads:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bot.sqlite")
            out[f"sqlite_{threads}t"] = round(run(store, args.turns, threads), 1)
            store.close()
        if args.store:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            store = Store(args.store, schema=schema)
            try:
                out[f"postgresql_{threads}t"] = round(run(store, args.turns, threads), 1)
            finally:
                store.db.execute(f'DROP SCHEMA "{schema}" CASCADE')
                store.close()
    print(json.dumps({"turns": args.turns, "turns_per_s": out}, indent=2))


if __name__ == "__main__":
    main()
