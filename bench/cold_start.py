"""Cold start: a fresh process imports the runtime, loads a bundle (every file's sha256 checked)
and answers one question.  Several bundles/variants, fresh processes in turns.

    python bench/cold_start.py exports/support-intents/v2 exports/support-intents/v2:openvino [--runs 5]

Per bundle: median and max of the wall time (interpreter start included) and of the in-process
time (from before ``import tuneforge.runtime`` to the first answer).  Results:
bench/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import machine, save

CODE = """
import json, sys, time
t0 = time.perf_counter()
from tuneforge.runtime import Predictor
p = Predictor.load(sys.argv[1], variant=(sys.argv[2] or None))
label = p.predict(["I still have not received my new card"])[0].label
print(json.dumps({"in_process_s": time.perf_counter() - t0, "variant": p.variant, "engine": p.engine,
                  "label": label, "torch_imported": "torch" in sys.modules}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+", help="BUNDLE or BUNDLE:VARIANT")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    specs = [(b.rsplit(":", 1) + [""])[:2] if ":" in b and not os.path.isdir(b) else [b, ""] for b in args.bundles]
    walls = {f"{b}:{v}": [] for b, v in specs}
    inner = {k: [] for k in walls}
    info = {}
    for _ in range(args.runs):
        for b, v in specs:
            key = f"{b}:{v}"
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CODE, b, v], check=True, capture_output=True, text=True)
            walls[key].append(time.perf_counter() - t)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            inner[key].append(r.pop("in_process_s"))
            info[key] = r
    result = {"machine": machine(), "load_average": os.getloadavg(), "runs": args.runs, "bundles": {
        k: {"wall_s": {"median": statistics.median(walls[k]), "max": max(walls[k]), "runs": walls[k]},
            "in_process_s": {"median": statistics.median(inner[k]), "max": max(inner[k]), "runs": inner[k]},
            **info[k]} for k in walls}}
    save("cold_start", result)
    for k, r in result["bundles"].items():
        print(f"{k}: {r['variant']} on {r['engine']}: wall median {r['wall_s']['median']:.2f} s "
              f"(max {r['wall_s']['max']:.2f}), in-process median {r['in_process_s']['median']:.2f} s "
              f"(max {r['in_process_s']['max']:.2f}); torch imported: {r['torch_imported']}")


if __name__ == "__main__":
    main()
