"""``tuneforge serve``."""

from __future__ import annotations

import click

EXAMPLE = """\b
Examples:
  tuneforge serve exports/support-intents/v1 --port 8000
  TUNEFORGE_TOKEN=secret tuneforge serve exports/support-intents/v1
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"texts": ["lost my card"]}'"""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("bundle", type=click.Path(exists=True, file_okay=False))
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=int)
    @click.option("--token", envvar="TUNEFORGE_TOKEN", help="Require this bearer token (env TUNEFORGE_TOKEN).")
    @click.option("--variant", help="ONNX variant (default: the fastest that passed parity here).")
    @click.option("--max-batch", default=64, show_default=True, type=int, help="Largest micro-batch.")
    def serve(bundle, host, port, token, variant, max_batch):
        """Serve a bundle over HTTP: POST /v1/predict, GET /healthz, GET /metrics (+ plugin routes)."""
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
