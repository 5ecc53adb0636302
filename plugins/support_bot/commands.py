"""``tuneforge support-bot ...`` and the ``tuneforge chat`` alias (registered by the plugin's hook).

Heavy imports (onnxruntime, faiss, torch) happen inside the commands.
"""

from __future__ import annotations

import json

import click

EXAMPLE = """\b
Examples:
  tuneforge train --task support-intents --mode top-k --epochs 3
  tuneforge export runs/support-intents-top-k-<time>
  tuneforge support-bot build --intent-bundle exports/support-intents
  tuneforge chat --debug
  tuneforge serve support-bot --port 8000
  tuneforge support-bot eval
  tuneforge support-bot feedback --turn 12 wrong --intent card_arrival
  tuneforge support-bot feedback --ticket 3 --intent lost_or_stolen_card
  tuneforge support-bot retrain --max-drop 0.01"""


def bot_dir_option(f):
    from .bot import DEFAULT_BOT_DIR

    return click.option("--bot-dir", default=DEFAULT_BOT_DIR, envvar="TUNEFORGE_SUPPORT_BOT", show_default=True,
                        type=click.Path(file_okay=False), help="The bot folder (env TUNEFORGE_SUPPORT_BOT).")(f)


def store_option(f):
    return click.option("--store", "store_url", envvar="TUNEFORGE_STORE", metavar="URL",
                        help="Keep transcripts, tickets, feedback and sessions in PostgreSQL "
                             "(postgresql://user@host/db[?schema=NAME]; env TUNEFORGE_STORE, so the password "
                             "need not be on the command line; PGPASSWORD and ~/.pgpass work too). "
                             "Default: bot.sqlite in the bot folder.")(f)


def _echo(data, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        for key, value in data.items():
            click.echo(f"{key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


def _chat(bot_dir, debug, session, store_url=None):
    from .chat import run_chat

    run_chat(bot_dir, debug=debug, session=session, store_url=store_url)


def chat_command(name: str) -> click.Command:
    @click.command(name=name, epilog=EXAMPLE)
    @bot_dir_option
    @click.option("--debug", "show_debug", is_flag=True, help="Show intent, confidence, sources and timing per turn.")
    @click.option("--session", help="Session id (default: a new one).")
    @store_option
    def chat(bot_dir, show_debug, session, store_url):
        """Chat with the support bot in the terminal (/help, /reset, /quit)."""
        _chat(bot_dir, show_debug, session, store_url)

    return chat


@click.group(name="support-bot", epilog=EXAMPLE)
def group():
    """The support bot: build, chat, serve, evaluate, collect feedback, retrain."""


group.add_command(chat_command("chat"))


@group.command(epilog=EXAMPLE)
@bot_dir_option
@click.option("--intent-bundle", required=True, type=click.Path(exists=True, file_okay=False),
              help="A support-intents bundle (exports/support-intents for the newest version).")
@click.option("--encoder-bundle", type=click.Path(exists=True, file_okay=False),
              help="An embedding bundle for retrieval (default: export --base-model now).")
@click.option("--base-model", default="all-MiniLM-L6-v2", show_default=True)
@click.option("--kb", "kb_dir", type=click.Path(exists=True, file_okay=False), help="Knowledge-base folder.")
@click.option("--answers", type=click.Path(exists=True, dir_okay=False), help="Answer templates (YAML).")
@click.option("--target-precision", default=0.9, show_default=True, type=float)
@click.option("--exports", default="exports", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def build(bot_dir, intent_bundle, encoder_bundle, base_model, kb_dir, answers, target_precision, exports, as_json):
    """Create a bot folder: export the encoder, index the knowledge base, calibrate thresholds."""
    from .build import build_bot
    from .datasets import ANSWERS, KB_DIR

    result = build_bot(bot_dir, intent_bundle, encoder_bundle=encoder_bundle, base_model=base_model,
                       kb_dir=kb_dir or KB_DIR, answers=answers or ANSWERS, target=target_precision,
                       exports=exports, progress=lambda s: click.echo(s, err=True))
    _echo(result, as_json)


@group.command(epilog=EXAMPLE)
@bot_dir_option
@click.option("--target-precision", default=0.9, show_default=True, type=float)
@click.option("--oos-share", default=0.2, show_default=True, type=float,
              help="Assumed share of out-of-scope messages in real traffic (weights the calibration).")
def calibrate(bot_dir, target_precision, oos_share):
    """Re-calibrate the thresholds on the calibration half of the bundled question sets."""
    from .bot import next_generation
    from .build import calibrate_bot

    with next_generation(bot_dir) as gen:
        thresholds = calibrate_bot(gen, target=target_precision, oos_share=oos_share)
    _echo(thresholds.to_dict(), True)


@group.command(epilog=EXAMPLE)
@bot_dir_option
def index(bot_dir):
    """Rebuild the knowledge index, re-embedding only documents that changed."""
    from .bot import Bot, next_generation, resolve
    from .retrieval import build_index

    with next_generation(bot_dir) as gen:
        bot = Bot.load(gen, refresh_index=False)
        _, stats = build_index(resolve(gen, bot.config.kb_dir), gen / "index", bot.embed,
                               encoder_id=bot.encoder.manifest.model_id, hnsw_above=bot.config.hnsw_above)
    _echo(stats.to_dict(), False)


@group.command(epilog="""\b
Example:
  tuneforge support-bot loadtest --clients 20 --seconds 30
  tuneforge support-bot loadtest --serve-args "--engine ray --replicas 2"
""")
@bot_dir_option
@click.option("--clients", default=20, show_default=True, type=click.IntRange(1, 500),
              help="Concurrent clients, each its own session.")
@click.option("--seconds", default=30.0, show_default=True, type=click.FloatRange(0.5, 3600),
              help="How long the clients keep sending.")
@click.option("--port", "server_port", type=click.IntRange(1, 65535),
              help="Load the server already running on 127.0.0.1:PORT (started with the same --store) "
                   "instead of starting one.")
@click.option("--serve-args", default="", metavar="'OPTIONS'",
              help="More options for the server it starts, e.g. --serve-args '--engine ray --replicas 2'.")
@store_option
@click.option("--json", "as_json", is_flag=True)
def loadtest(bot_dir, clients, seconds, server_port, serve_args, store_url, as_json):
    """Serve the bot in a child process, load /v1/chat from many clients, check no transcript row is lost.

    Messages are the bundled test questions, knowledge-base questions and out-of-scope
    questions.  Exits 1 if any request failed or any answered turn is missing from (or
    differs in) the store: bot.sqlite, or the PostgreSQL store of --store.
    """
    from .datasets import kb_questions, labelled_questions, out_of_scope
    from .loadtest import run_load

    messages = [q for q, _ in labelled_questions()[:500]] + [q for q, _ in kb_questions()] + out_of_scope()
    import shlex

    report = run_load(bot_dir, messages, clients=clients, seconds=seconds, store=store_url,
                      server_port=server_port, serve_args=tuple(shlex.split(serve_args)))
    _echo(report.to_dict(), as_json)
    if not report.passed:
        raise SystemExit(1)


@group.command(name="eval", epilog=EXAMPLE)
@bot_dir_option
@click.option("--sample", default=0, show_default=True, type=click.IntRange(0),
              help="In-scope questions run through the whole cascade (answer shares, hand-offs, latency); "
                   "0 = all of the evaluation half.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(bot_dir, sample, as_json):
    """Intent accuracy, out-of-scope precision/recall, retrieval recall@1/@5, answer kinds, latency."""
    from pathlib import Path

    from .evaluate import evaluate_bot, evaluate_conversation
    from .service import load_conversation

    conversation, bot = load_conversation(bot_dir)
    report = evaluate_bot(bot, cascade_sample=sample or None).to_dict()
    report["conversation"] = evaluate_conversation(conversation, plot=str(Path(bot_dir) / "oos-curve.png"))
    conversation.store.close()
    _echo(report, as_json)


@group.command(epilog=EXAMPLE)
@bot_dir_option
@click.option("--turn", "turn_id", type=int, help="Turn id (shown with chat --debug, returned by /v1/chat).")
@click.option("--ticket", "ticket_id", type=int, help="Hand-off ticket id.")
@click.argument("verdict", required=False, type=click.Choice(["right", "wrong"]))
@click.option("--intent", help="The right intent (a wrong turn, or a ticket).")
@store_option
def feedback(bot_dir, turn_id, ticket_id, verdict, intent, store_url):
    """Mark a turn right/wrong, or label a hand-off ticket with the intent it should have had."""
    from .feedback import record_feedback
    from .service import bot_labels, open_store

    with open_store(bot_dir, store_url) as store:
        _echo(record_feedback(store, bot_labels(bot_dir), turn_id=turn_id, ticket_id=ticket_id,
                              verdict=verdict, intent=intent), False)


@group.command(epilog=EXAMPLE)
@bot_dir_option
@click.option("--status", type=click.Choice(["open", "labelled"]), help="Only tickets with this status.")
@click.option("--turns", "show_turns", type=int, default=0, help="Also list the last N turns.")
@store_option
def tickets(bot_dir, status, show_turns, store_url):
    """List hand-off tickets (masked) and, with --turns N, the last N turns."""
    from .service import open_store

    with open_store(bot_dir, store_url) as store:
        for t in store.tickets(status):
            click.echo(f"#{t['id']} [{t['status']}] {t['question']}" + (f" -> {t['label']}" if t["label"] else ""))
        for r in store.turns(limit=show_turns) if show_turns else []:
            click.echo(f"turn {r['id']} {r['kind']} {r['intent'] or '-'} {r['feedback'] or ''}: {r['user_text']}")


@group.command(epilog=EXAMPLE)
@bot_dir_option
@click.option("--max-drop", default=0.01, show_default=True, type=float,
              help="Largest accuracy drop on the old test set (fraction) that still replaces the model.")
@click.option("--mode", default="top-k", show_default=True)
@click.option("--epochs", default=3.0, show_default=True, type=float)
@click.option("--runs", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--exports", default="exports", show_default=True, type=click.Path(file_okay=False))
@store_option
@click.option("--json", "as_json", is_flag=True)
def retrain(bot_dir, max_drop, mode, epochs, runs, exports, store_url, as_json):
    """Fold labelled feedback into the training data; train + export a new intent bundle; compare."""
    from .retrain import retrain as run_retrain

    report = run_retrain(bot_dir, max_drop=max_drop, runs=runs, exports=exports, store_url=store_url,
                         train_settings={"mode": mode, "epochs": epochs},
                         progress=lambda s: click.echo(s, err=True))
    _echo(report.to_dict(), as_json)
    if not report.accepted:
        click.echo(f"kept the old model: {report.reason}", err=True)


@group.command()
@click.option("--mode", default="top-k", show_default=True, help="Training mode (top-k: fast on CPU).")
@click.option("--top-k", default=2, show_default=True, type=click.IntRange(1, 48))
@click.option("--epochs", default=3.0, show_default=True, type=click.FloatRange(0.1, 100))
@click.option("--runs", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--exports", default="exports", show_default=True, type=click.Path(file_okay=False))
@bot_dir_option
def demo(mode, top_k, epochs, runs, exports, bot_dir):
    """The README's demo (`make demo`): train, export, score the intent model, build the bot, talk to it."""
    from types import SimpleNamespace

    from .demo import run_demo

    run_demo(SimpleNamespace(mode=mode, top_k=top_k, epochs=epochs, runs=runs, exports=exports, bot_dir=bot_dir))


def register(cli: click.Group) -> None:
    cli.add_command(group)
    cli.add_command(chat_command("chat"))
