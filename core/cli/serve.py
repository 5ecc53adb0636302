"""``tuneforge serve``."""

from __future__ import annotations

import click

from .common import server_options

EXAMPLE = """\b
Examples:
  tuneforge serve exports/support-intents/v1 --port 8000
  tuneforge serve support-bot --port 8000      # an app: runs `tuneforge support-bot serve`
  TUNEFORGE_TOKEN=secret tuneforge serve exports/support-intents/v1
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"texts": ["lost my card"]}'"""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("bundle")
    @server_options
    @click.option("--variant", help="ONNX variant (default: the fastest that passed parity here).")
    @click.option("--max-batch", default=64, show_default=True, type=int, help="Largest micro-batch.")
    @click.pass_context
    def serve(ctx, bundle, host, port, token, variant, max_batch):
        """Serve a bundle over HTTP: POST /v1/predict, GET /healthz, GET /metrics (+ plugin routes).

        BUNDLE is a bundle folder, or the name of an app whose plugin adds an `APP serve`
        command (e.g. support-bot, recommender): that command is run with the same host,
        port and token.
        """
        from pathlib import Path

        if not Path(bundle).is_dir():
            app = _app_server(ctx, bundle)
            args = {"host": host, "port": port, "token": token}
            return ctx.invoke(app, **{k: v for k, v in args.items() if any(p.name == k for p in app.params)})
        from ..plugin_manager import get_plugin_manager
        from ..runtime import Predictor
        from ..serve import create_app, run_server
        from ..tasks import all_tasks

        predictor = Predictor.load(bundle, variant=variant)
        routers: list = []
        get_plugin_manager().hook.tuneforge_register_routes(
            register=routers.append, task=all_tasks().get(predictor.task), predictor=predictor)
        app = create_app(predictor, token=token, max_batch=max_batch, routes=routers)
        click.echo(f"serving {bundle} ({predictor.variant} on {predictor.provider}) at http://{host}:{port}",
                   err=True)
        run_server(app, host=host, port=port)


def _app_server(ctx: click.Context, name: str) -> click.Command:
    """The ``serve`` subcommand of the app group ``name``, or a one-line usage error."""
    from ..errors import UsageError

    root = ctx.find_root().command
    apps = sorted(n for n, c in getattr(root, "commands", {}).items()
                  if isinstance(c, click.Group) and "serve" in c.commands)
    group = getattr(root, "commands", {}).get(name)
    if isinstance(group, click.Group) and "serve" in group.commands:
        return group.commands["serve"]
    raise UsageError(f"{name} is neither a bundle folder nor an app with a server",
                     hint="give exports/<name>/<version>, or one of: " + (", ".join(apps) or "no apps installed"))
