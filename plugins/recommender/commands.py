"""``tuneforge recommend`` and ``tuneforge recommender build|eval|serve`` (registered by the plugin).

Heavy imports (onnxruntime, faiss, scipy, torch for training) happen inside the commands.
"""

from __future__ import annotations

import json

import click

EXAMPLE = """\b
Examples:
  tuneforge recommender build --data ../shared/data/movielens_small --out recommenders/movielens
  tuneforge recommend --user 42 -k 10 --model-dir recommenders/movielens
  tuneforge recommend --taste "space adventures with robots" --model-dir recommenders/movielens
  tuneforge recommender score --user 42 --item 1 --item 260 --model-dir recommenders/movielens
  tuneforge recommender eval --model-dir recommenders/movielens
  tuneforge serve recommender --app-path recommenders/movielens --port 8000"""


DEFAULT_DIR = "recommenders/default"


def model_dir_option(f):
    return click.option("--model-dir", default=DEFAULT_DIR, envvar="TUNEFORGE_RECOMMENDER", show_default=True,
                        type=click.Path(file_okay=False),
                        help="A recommender folder written by `tuneforge recommender build` "
                             "(env TUNEFORGE_RECOMMENDER).")(f)


@click.command(name="recommend", epilog=EXAMPLE)
@click.option("--user", help="A known user id: rank the catalogue for their history.")
@click.option("--taste", help="A new user's taste in free text (cold start).")
@click.option("-k", "k", default=10, show_default=True, type=int, help="How many items.")
@model_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a list.")
@click.option("--no-explain", is_flag=True, help="Skip the 'because you liked' explanations.")
def recommend(user, taste, k, model_dir, as_json, no_explain):
    """Recommend K unseen items for a known user (--user) or a described taste (--taste)."""
    from tuneforge.errors import UsageError

    from .service import Recommender

    if (user is None) == (taste is None):
        raise UsageError("pass exactly one of --user ID or --taste TEXT")
    result = Recommender.load(model_dir).recommend(user, taste=taste, k=k, explain=not no_explain)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    who = f"user {user} ({result['history_size']} liked items)" if user is not None else f"taste {taste!r}"
    click.echo(f"top {len(result['recommendations'])} for {who}  [{result['took_ms']} ms]")
    for n, r in enumerate(result["recommendations"], 1):
        click.echo(f"{n:3}. {r['title']}  (item {r['item']}, score {r['score']:.3f})")
        if r["because"]:
            click.echo("       because you liked: " + "; ".join(b["title"] for b in r["because"]))


@click.group(name="recommender", epilog=EXAMPLE)
def group():
    """Text-based recommender: build (train, export, index, blend, evaluate), eval, score."""


@group.command(epilog=EXAMPLE)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML with a [recommender] table (data, out, threshold, [recommender.two_tower] ...).")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Data folder: interactions + items files, or a MovieLens folder (read in place).")
@click.option("--out", type=click.Path(file_okay=False), help="The recommender folder to write.")
@click.option("--threshold", type=float, help="Ratings at or above are positives [default 4.0; click files: all].")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False),
              help="Use this embedding bundle instead of training the two-tower model.")
@click.option("--base-bundle", type=click.Path(exists=True, file_okay=False),
              help="The base encoder already exported as a bundle (else the build exports it).")
@click.option("--text-mix", type=click.FloatRange(0.0, 1.0),
              help="Base-encoder weight in the text tower [default: chosen on the cold-start validation window].")
@click.option("--base-model", help="Base encoder for the two-tower model (default all-MiniLM-L6-v2).")
@click.option("--epochs", type=float, help="Two-tower epochs [default 1].")
@click.option("--pairs-per-user", type=int, help="Training targets per user [default 6].")
@click.option("--history", type=int, help="Items in the user text [default 5].")
@click.option("--no-baselines", is_flag=True, help="Skip popularity / BPR / ALS in the table (EASE and item-kNN "
              "are fitted anyway: the ranker uses them).")
@click.option("--seed", type=int, help="[default 42]")
def build(config_file, data, out, threshold, bundle, base_bundle, text_mix, base_model, epochs, pairs_per_user,
          history, no_baselines, seed):
    """Train + export the two-tower model, index items, learn the blend, evaluate, write the folder."""
    from tuneforge.errors import UsageError

    from .build import BuildConfig, build_recommender

    flags = {"data": data, "out": out, "threshold": threshold, "bundle": bundle, "base_bundle": base_bundle,
             "text_mix": text_mix, "base_model": base_model,
             "seed": seed, "baselines": False if no_baselines else None}
    tower = {k: v for k, v in {"epochs": epochs, "pairs_per_user": pairs_per_user, "history": history,
                               "seed": seed}.items() if v is not None}
    if config_file:
        cfg = BuildConfig.from_toml(config_file, **flags)
    elif data and out:
        cfg = BuildConfig(**{k: v for k, v in flags.items() if v is not None})
    else:
        raise UsageError("pass --data DIR and --out DIR (or --config FILE)")
    if tower:
        cfg.two_tower = type(cfg.two_tower)(**{**cfg.two_tower.to_dict(), **tower})
    folder, report = build_recommender(cfg, progress=lambda s: click.echo(s, err=True))
    click.echo(report.markdown())
    click.echo(f"recommender ready: {folder}  (seed {report.seed}, {report.wall_s:.0f} s)")


@group.command(name="eval", epilog=EXAMPLE)
@model_dir_option
@click.option("--json", "as_json", is_flag=True)
def evaluate(model_dir, as_json):
    """Print every evaluation table saved when the folder was built (warm, cold-start items and users),
    with the seed and the build wall time."""
    from pathlib import Path

    from tuneforge.errors import UsageError

    path = Path(model_dir) / "eval.json"
    if not path.is_file():
        raise UsageError(f"{model_dir} has no eval.json", hint="build it with `tuneforge recommender build`")
    if as_json:
        click.echo(path.read_text())
    else:
        click.echo((Path(model_dir) / "eval.md").read_text())


@group.command(epilog=EXAMPLE)
@click.option("--user", required=True)
@click.option("--item", "items", multiple=True, required=True, help="A candidate item id (repeat).")
@model_dir_option
def score(user, items, model_dir):
    """Score given candidate items for a known user (JSON)."""
    from .service import Recommender

    click.echo(json.dumps(Recommender.load(model_dir).score(user, list(items)), indent=2))


def register(cli: click.Group) -> None:
    cli.add_command(recommend)
    cli.add_command(group)
