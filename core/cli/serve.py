"""``tuneforge serve BUNDLE | APP``: one server for a bundle folder or any installed app."""

from __future__ import annotations

import click

from .common import resolve_token, server_options

EXAMPLE = """\b
Examples:
  tuneforge serve exports/support-intents/v1 --port 8000
  tuneforge serve support-bot                       # the app's default folder (bots/support-bot)
  tuneforge serve finance-monitor --app-path my-monitor/monitor.toml
  tuneforge serve recommender --app-path recommenders/movielens
  TUNEFORGE_TOKEN_FILE=~/.tf-token tuneforge serve support-bot --host 0.0.0.0
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"texts": ["lost my card"]}'
  tuneforge apps                                    # the apps you can serve"""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("target")
    @click.option("--app-path", help="The app's folder or config file (default: the app's own, see `tuneforge apps`).")
    @server_options
    @click.option("--variant", help="ONNX variant of a bundle (default: the fastest that passed parity here).")
    @click.option("--max-batch", default=64, show_default=True, type=click.IntRange(1, 4096),
                  help="Largest micro-batch, and most texts per request.")
    @click.option("--max-body-bytes", default=1_000_000, show_default=True, type=click.IntRange(1, 1 << 30),
                  help="Largest request body (chunked or not): 413 beyond it.")
    @click.option("--max-in-flight", default=64, show_default=True, type=click.IntRange(1, 100_000),
                  help="Requests served at once: 503 + Retry-After beyond it.")
    @click.option("--body-timeout", default=15.0, show_default=True, type=click.FloatRange(0.1, 3600),
                  help="Seconds a request body may take to arrive: 408 beyond it (slow clients).")
    @click.option("--private-docs", is_flag=True, help="Put /docs and /openapi.json behind the token too.")
    @click.option("--trust", type=click.Path(dir_okay=False), envvar="TUNEFORGE_TRUST",
                  help="Ed25519 public key (PEM): serve only bundles signed with it (env TUNEFORGE_TRUST).")
    @click.option("--store", envvar="TUNEFORGE_STORE", metavar="URL",
                  help="An app's state in PostgreSQL (postgresql://user@host/db[?schema=NAME]; env TUNEFORGE_STORE "
                       "keeps the password off the command line): the support bot's transcripts, the finance "
                       "monitor's state.  Default: the app's SQLite file.")
    def serve(target, app_path, host, port, token, token_file, no_token_on_network, variant, max_batch,
              max_body_bytes, max_in_flight, body_timeout, private_docs, trust, store):
        """Serve a bundle (POST /v1/predict) or an app (its routes) over HTTP, with /healthz and /metrics.

        TARGET is a bundle folder (exports/NAME/VERSION, or exports/NAME for the newest) or the
        name of an installed app (support-bot, finance-monitor, recommender, or a plugin's).
        Every server checks the same bearer token, limits and error format.
        """
        from ..serve import ServerLimits, build_server, run_server

        token = resolve_token(token, token_file, host, no_token_on_network)
        limits = ServerLimits(max_body_bytes=max_body_bytes, max_in_flight=max_in_flight, max_batch=max_batch,
                              body_timeout_s=body_timeout)
        app = build_server(target, app_path=app_path, token=token, limits=limits, variant=variant,
                           docs_public=not private_docs, trust=trust,
                           app_options={"store": store} if store else None)
        loaded = app.state.loaded
        what = f"{target} ({loaded.info.get('variant', '')} on {loaded.info.get('provider', '')})" \
            if loaded.name == "bundle" else f"app {loaded.name}"
        click.echo(f"serving {what} at http://{host}:{port}" + ("" if token else "  (no token)"), err=True)
        run_server(app, host=host, port=port)
