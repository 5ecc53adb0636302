"""``tuneforge serve BUNDLE | APP``: one server for a bundle folder or any installed app."""

from __future__ import annotations

from pathlib import Path

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
  tuneforge apps                                    # the apps you can serve
  tuneforge serve support-bot --engine ray --replicas 2          # Ray Serve, local Ray (pip install 'tuneforge[ray]')
  tuneforge serve support-bot --engine ray --autoscale 1:4 --address ray://head:10001"""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("target")
    @click.option("--app-path", help="The app's folder or config file (default: the app's own, see `tuneforge apps`).")
    @server_options
    @click.option("--variant", help="ONNX variant of a bundle (default: the fastest measured here at batch 1, and "
                                    "for 32+ texts at once the fastest at batch 32; one named serves every call).")
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
    @click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                  help="local: one uvicorn process; ray: a Ray Serve deployment of the same app (docs/scale-out.md).")
    @click.option("--replicas", type=click.IntRange(1, 1024), default=None,
                  help="--engine ray: replicas of the app (default 1).")
    @click.option("--autoscale", metavar="MIN:MAX", help="--engine ray: let Ray Serve scale between MIN and MAX replicas.")
    @click.option("--address",
                  help="--engine ray: an existing Ray cluster (ray://HOST:10001 or auto); default: start a local Ray.")
    @click.option("--replica-cpus", type=click.FloatRange(0.01, 64), default=0.5, show_default=True,
                  help="--engine ray: Ray CPU share each replica reserves (0.5 fits 2 replicas on 2 cores).")
    def serve(target, app_path, host, port, token, token_file, no_token_on_network, variant, max_batch,
              max_body_bytes, max_in_flight, body_timeout, private_docs, trust, engine, replicas, autoscale,
              address, replica_cpus, store):
        """Serve a bundle (POST /v1/predict) or an app (its routes) over HTTP, with /healthz and /metrics.

        TARGET is a bundle folder (exports/NAME/VERSION, or exports/NAME for the newest) or the
        name of an installed app (support-bot, finance-monitor, recommender, or a plugin's).
        Every server checks the same bearer token, limits and error format.
        """
        from ..errors import UsageError
        from ..serve import ServerLimits

        token = resolve_token(token, token_file, host, no_token_on_network)
        limits = ServerLimits(max_body_bytes=max_body_bytes, max_in_flight=max_in_flight, max_batch=max_batch,
                              body_timeout_s=body_timeout)
        # everything the app gets: the plain server and every Ray replica build it from these
        server_kwargs = dict(app_path=app_path, token=token, limits=limits, variant=variant,
                             docs_public=not private_docs, trust=trust,
                             app_options={"store": store} if store else None)
        if engine == "ray":
            return _serve_on_ray(target, server_kwargs, host=host, port=port, replicas=replicas,
                                 autoscale=autoscale, address=address, replica_cpus=replica_cpus,
                                 max_in_flight=max_in_flight, token=token)
        if replicas is not None or autoscale is not None or address is not None:
            raise UsageError("--replicas, --autoscale and --address need --engine ray")
        _serve_locally(target, server_kwargs, host=host, port=port, token=token)


def _serve_locally(target: str, server_kwargs: dict, *, host: str, port: int, token) -> None:
    from ..serve import build_server, run_server

    app = build_server(target, **server_kwargs)
    loaded = app.state.loaded
    what = f"{target} ({loaded.info.get('variant', '')} on {loaded.info.get('provider', '')})" \
        if loaded.name == "bundle" else f"app {loaded.name}"
    click.echo(f"serving {what} at http://{host}:{port}" + ("" if token else "  (no token)"), err=True)
    run_server(app, host=host, port=port)


def _serve_on_ray(target: str, server_kwargs: dict, *, host: str, port: int, replicas, autoscale, address,
                  replica_cpus: float, max_in_flight: int, token) -> None:
    from ..errors import UsageError
    from ..ray_serve import RayServeConfig, RayServer, parse_autoscale, require_ray

    if replicas is not None and autoscale is not None:
        raise UsageError("give --replicas or --autoscale, not both")
    # replicas run in Ray's worker processes, not in this folder: give them absolute paths
    # (on a cluster these paths must exist on every node -- docs/scale-out.md)
    from ..application import all_apps

    server_kwargs = dict(server_kwargs)
    apps = all_apps()
    if target in apps and "/" not in target:
        if server_kwargs.get("app_path") is None and apps[target].default_path is not None:
            server_kwargs["app_path"] = apps[target].default_path
    elif Path(target).exists():
        target = str(Path(target).resolve())
    for key in ("app_path", "trust"):
        if server_kwargs.get(key) is not None:
            server_kwargs[key] = str(Path(server_kwargs[key]).resolve())
    require_ray()
    config = RayServeConfig(replicas=replicas or 1, autoscale=parse_autoscale(autoscale), address=address,
                            host=host, port=port, cpus_per_replica=replica_cpus, max_ongoing_requests=max_in_flight)
    where = address or "a local Ray"
    layout = f"{config.autoscale[0]}..{config.autoscale[1]} replicas" if config.autoscale else \
        f"{config.replicas} replica{'s' * (config.replicas > 1)}"
    click.echo(f"starting {target} on Ray Serve ({layout}, {where}) ...", err=True)
    server = RayServer(target, server_kwargs, config)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    click.echo(f"serving {target} on Ray Serve ({layout}) at {server.url}" + ("" if token else "  (no token)"),
               err=True)
    server.serve_forever()
