"""``tuneforge soup``."""

from __future__ import annotations

import json

import click

EXAMPLE = """\b
Examples:
  tuneforge train --task finance-sentiment --set data_seed=43 --run-name fin-43
  tuneforge train --task finance-sentiment --set data_seed=44 --run-name fin-44
  tuneforge soup runs/fin-42 runs/fin-43 runs/fin-44 --out runs/fin-soup
  tuneforge export runs/fin-soup

Averages the weights of runs of one recipe that differ only in data_seed (same base model, same
head initialisation) into a new run folder (+ soup.json), re-measured on its validation and test
splits; export it like any run."""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="New run folder for the averaged model.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def soup(runs, out_dir, as_json):
        """Average the weights of several runs of one recipe (a uniform model soup)."""
        from ..train.soup import soup_runs

        out = soup_runs(list(runs), out_dir)
        metrics = json.loads((out / "metrics.json").read_text())
        if as_json:
            click.echo(json.dumps({"run_dir": str(out), "members": list(runs), "metrics": metrics}, indent=2))
            return
        click.echo(f"soup of {len(runs)} runs: {out}")
        for split, m in metrics.items():
            click.echo(f"  {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float)))
