"""The ``greenbutton`` command: parse arguments, load settings, call wiring. No logic here."""

from __future__ import annotations

import argparse
import gc
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import logs
from ..config import Settings
from ..errors import GreenbuttonError
from . import governance as governance_commands
from . import images as image_commands
from .commands import Commands

EXIT_PENDING = 3
"""Exit status of ``promote`` and ``deploy`` when the change awaits another approver."""
EPILOG = """\
typical session:
  greenbutton up                      # control plane + controller on 127.0.0.1:8600
  python train.py                     # greenbutton.log_model(MyModel(), "digits", ...)
  greenbutton promote digits latest   # the green button: Production, deployed at once
  greenbutton status                  # stages, deployments and their URLs

settings come from GREENBUTTON_* environment variables or a .env file
(e.g. GREENBUTTON_HOME, GREENBUTTON_SERVER__PORT, GREENBUTTON_MLFLOW__TRACKING_URI).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``greenbutton`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    settings = Settings()
    command: Callable[[Settings, argparse.Namespace], int] = args.command
    try:
        return command(settings, args)
    except GreenbuttonError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenbutton", description="Write one Python class, press one green button, "
        "get a governed, monitored REST endpoint.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_run_commands(sub)
    _add_lifecycle_commands(sub)
    _add_deploy_command(sub)
    _add_status_commands(sub)
    _add_model_commands(sub)
    _add_data_commands(sub)
    _add_operations_commands(sub)
    image_commands.add_commands(sub)
    sub.choices["build"].set_defaults(command=_build)
    sub.choices["manifests"].set_defaults(command=_manifests)
    governance_commands.add_commands(sub)
    return parser


def _add_run_commands(sub: Commands) -> None:
    """``up`` and ``serve``: the processes greenbutton runs."""
    up = sub.add_parser("up", help="start the control plane and the controller (Ctrl-C stops)")
    up.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="port (default 8600)")
    up.set_defaults(command=_up)

    serve = sub.add_parser("serve", help="serve one model over HTTP (no controller needed)")
    serve.add_argument("model_uri", help="e.g. models:/digits@production or models:/digits/3")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8700)")
    serve.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    serve.set_defaults(command=_serve)


def _add_lifecycle_commands(sub: Commands) -> None:
    """``promote`` and ``archive``: a version's stage."""
    for name, stage, text in (
        ("promote", "Production", "move a version to Production (or --stage Staging)"),
        ("archive", "Archived", "take a version out of service"),
    ):
        cmd = sub.add_parser(name, help=text, description=text, epilog=EXIT_HELP)
        cmd.add_argument("model", help="registered model name")
        cmd.add_argument("version", help="version number, 'latest', 'staging' or 'production'")
        if name == "promote":
            cmd.add_argument("--stage", default=stage, choices=["Production", "Staging"],
                             type=str.capitalize, help="target stage (default Production)")
            cmd.add_argument("--no-wait", action="store_true",
                             help="return once the version is moved; do not wait until it "
                                  "serves (default: wait, showing progress, then the URL)")
        else:
            cmd.set_defaults(stage=stage, no_wait=True)
        cmd.add_argument("--reason", help="why; kept in the transition history")
        cmd.add_argument("--actor", default=getpass.getuser(),
                         help="who is doing this (default: your login name)")
        cmd.set_defaults(command=_transition)


def _add_deploy_command(sub: Commands) -> None:
    """``deploy``: routes, shadow and replicas of a deployment."""
    deploy = sub.add_parser("deploy", help="set a deployment's routes, shadow and replicas",
                            description=DEPLOY_HELP, epilog=EXIT_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    deploy.add_argument("name", help="deployment name (its stable URL: /endpoints/NAME/)")
    deploy.add_argument("--model", help="registered model (default: NAME)")
    deploy.add_argument("--route", action="append", default=[], metavar="TARGET=WEIGHT",
                        help="production|staging|challenger|VERSION = weight (repeatable)")
    deploy.add_argument("--shadow", action="append", default=[], metavar="[TARGET=]PERCENT",
                        help="mirror PERCENT %% of requests to TARGET (default staging)")
    deploy.add_argument("--sticky-header", help="assign callers to a variant by this header")
    deploy.add_argument("--replicas", type=int,
                        help="serving replicas per version (default: the controller's, "
                             "GREENBUTTON_CONTROLLER__REPLICAS; locally 2 on 2+ cores)")
    deploy.add_argument("--max-replicas", type=int, help="autoscaling ceiling (Kubernetes)")
    deploy.add_argument("--target", help="deploy target URI (default: the controller's)")
    deploy.add_argument("--write-manifests", type=Path, metavar="DIR",
                        help="write Kubernetes manifests to DIR (GitOps) instead of storing")
    deploy.add_argument("--namespace", default="default", help="namespace for --write-manifests")
    deploy.add_argument("--actor", default=getpass.getuser(), help="who is doing this")
    deploy.set_defaults(command=_deploy)


def _add_status_commands(sub: Commands) -> None:
    """``rollback``, ``status`` and ``history``."""
    rollback = sub.add_parser("rollback", help="return a model to its previous Production version")
    rollback.add_argument("model")
    rollback.add_argument("--reason", help="why; kept in the transition history")
    rollback.add_argument("--actor", default=getpass.getuser(), help="who is doing this")
    rollback.set_defaults(command=_rollback)

    status = sub.add_parser("status", help="models, versions, stages, deployments and URLs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(command=_status)

    history = sub.add_parser("history", help="every stage transition of a model")
    history.add_argument("model")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.set_defaults(command=_history)


def _add_model_commands(sub: Commands) -> None:
    """``check`` and ``explain``: a logged model, looked at."""
    check = sub.add_parser("check", help="check a logged model against greenbutton's contract")
    check.add_argument("model_uri", help="e.g. models:/digits/3")
    check.set_defaults(command=_check)

    explain = sub.add_parser("explain", help="explain a reference row of a logged model")
    explain.add_argument("model_uri", help="e.g. models:/digits/3")
    explain.add_argument("--row", type=int, default=0, help="reference row (default 0)")
    explain.add_argument("--png", type=Path, help="write the attribution picture here")
    explain.add_argument("--output", help="class to explain (default: the predicted one)")
    explain.set_defaults(command=_explain)


def _add_data_commands(sub: Commands) -> None:
    """``export`` and ``payload prune``: the payload log."""
    export = sub.add_parser("export", help="payload log (+ feedback) as a training dataset")
    export.add_argument("model", help="registered model name")
    export.add_argument("--since", default="7d", help="7d, 12h, 30m or an ISO time (default 7d)")
    export.add_argument("--exclude-outliers", action="store_true", help="drop flagged rows")
    export.add_argument("--with-feedback", action="store_true",
                        help="only rows that received a truth or reward")
    export.add_argument("--output", type=Path, help="file.parquet or file.csv "
                        "(default MODEL-export.parquet)")
    export.add_argument("--log-to-mlflow", action="store_true",
                        help="also log it as an MLflow dataset input of a new run")
    export.set_defaults(command=_export)

    payload = sub.add_parser("payload", help="maintain the payload log (see 'payload prune')")
    payload_sub = payload.add_subparsers(title="commands", metavar="COMMAND", required=True)
    prune = payload_sub.add_parser(
        "prune", help="delete old payload records and feedback now",
        description="Delete payload records received before --older-than, and all but the "
        "newest --max-rows; feedback received before --older-than too. Records go a flush's "
        "batch at a time: a batch once all of it is that old, and the batch crossing "
        "--max-rows whole. Serving processes do this by themselves every "
        "monitoring.payload_prune_interval_s; this runs it by hand.")
    prune.add_argument("--older-than", metavar="AGE",
                       help="7d, 12h, 30m or an ISO time (default: "
                       "GREENBUTTON_MONITORING__PAYLOAD_RETENTION_DAYS, 30d)")
    prune.add_argument("--max-rows", type=int, metavar="N",
                       help="keep at most the newest N records, 0: no limit (default: "
                       "GREENBUTTON_MONITORING__PAYLOAD_MAX_ROWS, 5000000)")
    prune.set_defaults(command=_payload_prune)


def _add_operations_commands(sub: Commands) -> None:
    """``doctor`` and ``monitoring-config``."""
    doctor = sub.add_parser("doctor", help="check every configured backend (store, MLflow, "
                            "artifacts, deploy target); exit 1 on problems")
    doctor.set_defaults(command=_doctor)

    prom = sub.add_parser("monitoring-config",
                          help="write Prometheus scrape config, alert rules, Grafana dashboards")
    prom.add_argument("directory", type=Path, nargs="?",
                      help="where to write (default <home>/prometheus, beside the targets "
                      "file the controller keeps up to date)")
    prom.add_argument("--target", action="append", default=[], metavar="NAME=HOST:PORT",
                      help="a deployment to scrape (repeatable)")
    prom.add_argument("--token-file", type=Path, metavar="FILE",
                      help="API token (holding 'invoke') Prometheus sends, where endpoint "
                      "auth is on")
    prom.set_defaults(command=_monitoring_config)


EXIT_HELP = (f"exit status: 0 done, 1 error, {EXIT_PENDING} pending approval (four-eyes: "
             "someone else must approve the request it prints)")

DEPLOY_HELP = """\
examples:
  greenbutton deploy wine --route production=80 --route challenger=20
  greenbutton deploy wine --shadow 5                 # mirror 5 %% to the staging version
  greenbutton deploy wine --route production=100 --shadow staging=10 --sticky-header X-User
  greenbutton deploy wine --write-manifests k8s/     # Kubernetes YAML for GitOps
'challenger' is a synonym of 'staging'. Routes to an alias without a version are skipped.
"""


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    from .deploy import deploy

    with _client(settings) as client:
        pending = deploy(client, args, settings)
    return 0 if pending is None else print_pending(pending)


def _build(settings: Settings, args: argparse.Namespace) -> int:
    return image_commands.build(settings, args)


def _manifests(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings) as client:
        return image_commands.manifests(client, settings, args)


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from ..doctor.checks import run

    return run(settings)


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from ..wiring import prepare_home
    from .monitoring import export

    prepare_home(settings)
    return export(settings, args)


def _payload_prune(settings: Settings, args: argparse.Namespace) -> int:
    from ..wiring import prepare_home
    from .monitoring import payload_prune

    prepare_home(settings)
    return payload_prune(settings, args)


def _monitoring_config(settings: Settings, args: argparse.Namespace) -> int:
    from .monitoring import monitoring_config

    return monitoring_config(settings, args)


def _rollback(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings) as client:
        done = client.rollback(args.model, actor=args.actor, reason=args.reason)
    for t in done:
        print(f"{t['model']} v{t['version']}: {t['from_stage']} -> {t['to_stage']}")
    return 0


def _version() -> str:
    from .. import __version__

    return __version__


def _client(settings: Settings, *, timeout_s: float = 30.0) -> Any:
    from ..client import ControlPlaneClient
    from .governance import local_token

    return ControlPlaneClient(settings.server.url, token=local_token(settings),
                              timeout_s=timeout_s)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from ..controlplane.context import of_app
    from ..controlplane.run import run_control_plane
    from ..wiring import build_control_plane

    # the control plane copies versions out of MLflow for their gates: no progress bars in
    # its log (a user who wants them sets the variable)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.umask(0o077)  # everything the platform writes is its own
    settings = settings.listening(server_host=args.host, server_port=args.port)
    app = build_control_plane(settings)
    if of_app(app).is_bootstrapped:  # first start; the secret itself never goes to a log
        print(f"created user 'admin'; its API token is in {settings.home / 'admin.token'} "
              "(0600, read by the CLI on this machine): keep it in your secret store",
              flush=True)
    if settings.is_endpoint_auth_required:
        print("endpoints: a bearer token holding 'invoke' on the model is required", flush=True)
    else:
        print(f"endpoints: OPEN to anyone who can reach {settings.server.host} (loopback); "
              "GREENBUTTON_AUTH__IS_ENDPOINT_AUTH_ENABLED=true requires tokens", flush=True)
    run_control_plane(app, settings)
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    # startup makes ~500k objects and little garbage: without collections it is ~15 % faster;
    # dataplane/process.py resumes them once the model is loaded
    gc.disable()
    # a server's stderr is a log, where MLflow's download progress bars are only noise; a
    # user who wants them sets the variable
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.umask(0o077)
    settings = settings.listening(serving_host=args.host, serving_port=args.port)
    logs.configure()  # uvicorn's lines too (dataplane/process.py gives it no format of its own)
    try:
        from ..dataplane.prefetch import prefetching  # MLflow: needed by its helper and by us
        from ..wiring import governed_model_uri

        copied_to = settings.serving.model_dir  # set by the controller: MLflow is not asked
        model_uri = args.model_uri
        if copied_to is None:
            model_uri = governed_model_uri(settings, args.model_uri)
        with prefetching(model_uri, settings.mlflow, copied_to=copied_to) as fetch:
            from ..dataplane.process import run  # the web stack, while the helper fetches the model
            from ..wiring import build_monitoring

            run(settings, model_uri, host=args.host, port=args.port, fd=args.fd,
                plugins=build_monitoring(settings), fetch=fetch)
    finally:
        gc.enable()
    return 0


def _transition(settings: Settings, args: argparse.Namespace) -> int:
    from .promote import follow_rollout

    if not args.no_wait:
        print(f"{args.model} {args.version} -> {args.stage}: running gates", flush=True)
    # the server bounds the request by the gates' budget: never give up before it does
    with _client(settings, timeout_s=settings.auth.gate_timeout_s + 30) as client:
        done = client.move(args.model, args.version, args.stage, actor=args.actor,
                           reason=args.reason)
        for t in done["transitions"]:
            print(f"{t['model']} v{t['version']}: {t['from_stage']} -> {t['to_stage']}",
                  flush=True)
        if not done["transitions"] and done.get("request") is not None:
            return print_pending(done["request"])
        moved = [t for t in done["transitions"] if t["to_stage"] == args.stage]
        if args.no_wait or not moved:
            return 0
        return follow_rollout(client, args.model, int(moved[-1]["version"]),
                              lambda line: print(line, flush=True))


def print_pending(request: dict[str, Any]) -> int:
    """Say that nothing changes until someone else approves; the exit status says so too."""
    print(f"pending approval: request #{request['id']} (needs 'approve' on "
          f"{request['model']!r} from someone other than {request['proposer']!r}: "
          f"greenbutton approve {request['id']})")
    return EXIT_PENDING


def _status(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings) as client:
        models, deployments = client.models(), client.deployments()
        integrity = client.integrity()
    if args.json:
        print(json.dumps({"models": models, "deployments": deployments,
                          "integrity": integrity}, indent=2))
        return 0
    _table(["MODEL", "LATEST", "PRODUCTION", "STAGING"],
           [[m["name"], m["latest_version"], m["production"], m["staging"]] for m in models])
    print()
    _table(["DEPLOYMENT", "VERSION", "STATE", "TRAFFIC", "URL", "REASON"],
           [[d["name"], d["version"], d.get("summary") or d["state"], _traffic(d), d["url"],
             d["reason"]] for d in deployments])
    for line in _integrity_lines(integrity):
        print(line)
    return 0


def _integrity_lines(report: dict[str, Any]) -> list[str]:
    """What changed behind greenbutton's back, in words (nothing when all is well)."""
    lines = []
    if report["problem"]:
        lines.append(f"AUDIT LOG BROKEN, deployments frozen: {report['problem']} "
                     "(greenbutton audit verify)")
    for d in report["repaired_stages"]:
        lines.append(f"put back: {d['model']} v{d['version']} was {d['stored']} in the store, "
                     f"governed {d['governed']}")
    for d in report["repaired_aliases"]:
        lines.append(f"put back: {d['model']} alias {d['alias']!r} pointed at "
                     f"{_version_or_none(d['mlflow'])}, governed {_version_or_none(d['governed'])}")
    return ["", *lines] if lines else []


def _version_or_none(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _traffic(deployment: dict[str, Any]) -> str:
    """``v3:80 v4:20 v5:shadow 5%`` from a deployment status."""
    shares = [f"v{t['version']}:" + (f"shadow {t['mirror_percent']}%" if t["mirror_percent"]
                                      else str(t["weight"]))
              for t in deployment.get("traffic", ())]
    return " ".join(shares) or "-"


def _history(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings) as client:
        done = client.history(args.model)
    if args.json:
        print(json.dumps(done, indent=2))
        return 0
    _table(["WHEN", "VERSION", "FROM", "TO", "WHO", "REASON"],
           [[t["at"], t["version"], t["from_stage"], t["to_stage"], t["actor"], t["reason"]]
            for t in done])
    return 0


def _explain(settings: Settings, args: argparse.Namespace) -> int:
    import mlflow

    from ..explain.report import explain_reference_row
    from ..registry.console import quiet_mlflow
    from ..registry.tracking import open_mlflow

    with quiet_mlflow():  # a download's progress bars and MLflow's INFO lines are only noise
        open_mlflow(settings.mlflow)  # MLflow's database created first, one process at a time
        # MLflow resolves models:/ URIs against its global registry URI (else ./mlflow.db)
        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        mlflow.set_registry_uri(settings.mlflow.registry_uri)
        text = explain_reference_row(settings, args.model_uri, args.row, png=args.png,
                                     output=args.output)
    print(text)
    return 0


def _check(settings: Settings, args: argparse.Namespace) -> int:
    import mlflow

    from ..conformance import check
    from ..registry.tracking import open_mlflow

    open_mlflow(settings.mlflow)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.registry_uri)
    report = check(args.model_uri)
    print(f"{args.model_uri}: {report}")
    return 0 if report.is_ok else 1


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")
