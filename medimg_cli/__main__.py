"""The `medimg` command: start the stack, run one component, call the gateway."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from medimg_cli import components, ports, stack
from medimg_cli.supervisor import LinePrinter, Outcome, Supervisor, colour_wanted
from servicekit.argtypes import bounded
from servicekit.settings import SettingsError

DEFAULT_TIMEOUT_S = 30.0
# A series is hundreds of files: upload and two models over every slice take longer.
SERIES_TIMEOUT_S = 600.0
# How long `up` waits for every port to accept connections before it stops saying so.
_READY_WAIT_S = 300.0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line argv (sys.argv[1:] when None) and returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("up", "serve") and components.PLUGIN_ERROR:
        # A plug-in's component.json is broken: starting without it would hide the problem.
        return _fail(args.command, components.PLUGIN_ERROR, code=2)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        # Ctrl-C outside `up`'s supervision (a call in flight, a port check): no traceback.
        return 130
    return code


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="medimg",
        description="Runs the medimg stack and calls its gateway.",
    )
    gateway_help = "gateway address host:port (default: $MEDIMG_GATEWAY or 127.0.0.1:50051)"
    parser.add_argument("--gateway", metavar="ADDR", help=gateway_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="start the gateway, every service and the web tier, and keep them running",
        description="Starts every installed component on 127.0.0.1, restarts one that dies, "
        "and stops them all on Ctrl-C or SIGTERM. Each component's port comes from its "
        "flag, else its {PREFIX}PORT variable, else its default moved by --port-offset.",
    )
    up.add_argument("--gateway-port", type=_port, metavar="PORT", help="gateway port (50051)")
    up.add_argument("--web-port", type=_port, metavar="PORT", help="web port (8000)")
    up.add_argument(
        "--port-offset",
        type=int,
        default=0,
        metavar="N",
        help="add N to every default port, to run a second stack beside the first",
    )
    up.add_argument(
        "--only",
        type=_names,
        metavar="NAMES",
        help=f"start only these components, comma-separated ({','.join(components.BY_NAME)})",
    )
    up.set_defaults(run=run_up)

    serve = commands.add_parser(
        "serve",
        help="run one component in the foreground",
        description="Replaces this process with one component, configured by its env vars.",
    )
    serve.add_argument("name", choices=list(components.BY_NAME), help="component to run")
    serve.add_argument("--port", type=_port, help="its port (sets {PREFIX}PORT)")
    serve.set_defaults(run=run_serve)

    diagnose = commands.add_parser(
        "diagnose",
        help="diagnose image files through the gateway",
        description="Sends each file to the gateway's Diagnose and prints one row per file.",
    )
    diagnose.add_argument("--disease", required=True, help="disease to diagnose, such as skin")
    diagnose.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JPEG or PNG image")
    _add_call_options(diagnose, gateway_help)
    diagnose.set_defaults(run=run_diagnose)

    series = commands.add_parser(
        "analyze-series",
        help="analyse an MRI series zip through the gateway",
        description="Streams a zip of pre/, 1st_pass/, 2nd_pass/ and 3rd_pass/ DICOM folders "
        "to the gateway's AnalyzeSeries and prints the flagged slices and a per-slice "
        "probability strip of each model.",
    )
    series.add_argument("file", type=Path, metavar="ZIP", help="the series zip")
    series.add_argument("--disease", default="mri", help="disease to analyse (default: mri)")
    series.add_argument(
        "--dicom-out",
        type=Path,
        metavar="DIR",
        help="also write the result as DICOM into DIR: report-sr.dcm (TID 1500 Measurement "
        "Report) and key-images-kos.dcm (Key Object Selection, when a slice is flagged)",
    )
    _add_call_options(series, gateway_help, default_timeout_s=SERIES_TIMEOUT_S)
    series.set_defaults(run=run_analyze_series)

    models = commands.add_parser(
        "models",
        help="list the diseases and models the gateway routes to",
        description="Calls the gateway's ModelRegistry.ListModels and prints one row per disease.",
    )
    _add_call_options(models, gateway_help)
    models.set_defaults(run=run_models)

    train = commands.add_parser(
        "train",
        help="train a disease's model and export it, such as `medimg train skin`",
        description="Runs the disease's trainer (<disease>_service.train) with the arguments "
        "that follow the disease; `medimg train skin --help` lists them.",
    )
    train.add_argument("disease", help="disease whose model to train, such as skin")
    train.add_argument(
        "arguments", nargs=argparse.REMAINDER, help="the trainer's own options, passed through"
    )
    train.set_defaults(run=run_train)

    new_service = commands.add_parser(
        "new-service",
        help="scaffold a new disease service, such as `medimg new-service retina --labels a,b`",
        description="Writes <NAME>_service/ (servicer on servicekit, embedded backend, demo "
        "model writer, training command, tests) and its entries in k8s/ (base file, overlay "
        "patches, gateway registry) and .env.example. Refuses to overwrite anything; "
        "docs/adding-a-disease.md walks through what comes next.",
    )
    new_service.add_argument(
        "name", help="disease name: 1 to 20 lower-case letters or digits, such as retina"
    )
    new_service.add_argument(
        "--labels",
        required=True,
        metavar="A,B,C",
        help="2 to 20 labels in the model's output order, such as normal,glaucoma",
    )
    new_service.add_argument(
        "--framework",
        choices=("keras", "torch"),
        default="keras",
        help="keras (a SavedModel, as TF Serving serves) or torch (TorchScript); default keras",
    )
    new_service.add_argument(
        "--port", type=int, help="its gRPC port (default: the first free one from 50070)"
    )
    new_service.add_argument(
        "--root",
        type=Path,
        default=components.REPOSITORY_ROOT,
        help=f"the medimg checkout to write into (default: {components.REPOSITORY_ROOT})",
    )
    new_service.set_defaults(run=run_new_service)
    return parser


def _add_call_options(
    parser: argparse.ArgumentParser, gateway_help: str, default_timeout_s: float = DEFAULT_TIMEOUT_S
) -> None:
    # SUPPRESS keeps a --gateway given before the subcommand from being reset to None here.
    parser.add_argument("--gateway", metavar="ADDR", default=argparse.SUPPRESS, help=gateway_help)
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default_timeout_s,
        metavar="SECONDS",
        help=f"deadline of each call (default: {default_timeout_s:g})",
    )


_port = bounded(int, "a port number", at_least=0, at_most=65535)  # 0: any free port
_positive_seconds = bounded(float, "a number of seconds", more_than=0.0)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _fail(command: str, message: str, code: int = 1) -> int:
    first, *rest = message.splitlines() or [""]
    print(f"medimg {command}: error: {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)
    return code


def run_up(args: argparse.Namespace) -> int:
    """Starts the installed components and supervises them until Ctrl-C or SIGTERM."""
    env = dict(os.environ)
    try:
        present, skipped = stack.choose_components(args.only, components.Component.is_installed)
        overrides = {
            name: port
            for name, port in (("gateway", args.gateway_port), ("web", args.web_port))
            if port is not None
        }
        planned = ports.plan_ports(present, env, offset=args.port_offset, overrides=overrides)
    except (stack.PlanError, ports.PortError, SettingsError) as exc:
        return _fail("up", str(exc))
    printer = LinePrinter(
        sys.stdout, [c.name for c in present], colour=colour_wanted(sys.stdout, env)
    )
    for component in skipped:
        printer.say(f"{component.name}: not installed in this checkout, skipped")
    if not present:
        return _fail("up", "nothing to start: no component is installed in this checkout")
    try:
        planned = ports.resolve_free_ports(planned, components.LOOPBACK)
        hints = {c.name: stack.port_hint(c) for c in present}
        ports.check_ports_free(components.LOOPBACK, planned, hints)
    except ports.PortError as exc:
        return _fail("up", str(exc))
    # Each component makes its own folders under the root (web: its SQLite file's too).
    root = stack.state_root(Path.cwd(), env, args.port_offset)
    specs = stack.child_specs(present, planned, base=env, state_root=root)
    printer.say(f"state under {root} (set {stack.STATE_DIR_ENV} to move it)")
    printer.say(f"starting {', '.join(spec.name for spec in specs)} (Ctrl-C stops everything)")
    outcome = asyncio.run(_supervise(Supervisor(specs, printer), printer, planned))
    if not outcome.clean:
        return _fail("up", f"stopped because {outcome.gave_up_on} kept failing; see above")
    printer.say("stopped")
    return 0


async def _supervise(
    supervisor: Supervisor, printer: LinePrinter, planned: Mapping[str, int]
) -> Outcome:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        printer.say("stopping (press Ctrl-C again to kill everything now)")
        supervisor.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    announce = asyncio.create_task(_announce_when_listening(printer, planned))
    try:
        return await supervisor.run()
    finally:
        announce.cancel()


async def _announce_when_listening(printer: LinePrinter, planned: Mapping[str, int]) -> None:
    """Says where each component is once its port accepts connections, so it can be used."""

    async def announce(name: str, port: int) -> None:
        if await ports.wait_until_listening(components.LOOPBACK, port, timeout_s=_READY_WAIT_S):
            printer.say(stack.where_line(name, port))

    await asyncio.gather(*(announce(name, port) for name, port in planned.items()))


def run_serve(args: argparse.Namespace) -> int:
    """Replaces this process with one component; returns only when it cannot start."""
    component = components.BY_NAME[args.name]
    if not component.is_installed():
        return _fail("serve", f"{component.name} is not installed in this checkout")
    overrides = {component.name: args.port} if args.port is not None else {}
    try:
        planned = ports.plan_ports({component, components.GATEWAY}, os.environ, overrides=overrides)
    except (ports.PortError, SettingsError) as exc:
        return _fail("serve", str(exc))
    launch = component.launch(component, planned)
    # What the caller set by hand wins over what serve would derive.
    env = {**launch.env, **os.environ, "PYTHONUNBUFFERED": "1"}
    if args.port is not None:
        env[component.port_variable] = str(args.port)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # Becomes the component (no shell): its argv comes from the component table.
        os.execve(launch.argv[0], list(launch.argv), env)  # noqa: S606
    except OSError as exc:
        return _fail("serve", f"cannot run {' '.join(launch.argv)}: {exc.strerror}")


def run_diagnose(args: argparse.Namespace) -> int:
    """Diagnoses each file through the gateway and prints the table."""
    from medimg_cli import client  # grpc loads only for the commands that call it

    problems = client.unreadable_files(args.files)
    if problems:
        return _fail("diagnose", "\n".join(problems), code=2)
    address = client.gateway_address(args.gateway, os.environ)
    results = []
    try:
        for path, response in client.diagnose_files(
            address, args.disease, args.files, timeout_s=args.timeout
        ):
            results.append((str(path), response))
    except client.CallFailed as failure:
        # The files before the failing one were diagnosed; show them rather than lose them.
        if results:
            print(client.format_diagnoses(results))
        failed = args.files[len(results)]
        message = client.describe_failure(
            failure, subject=str(failed), address=address, timeout_s=args.timeout
        )
        return _fail("diagnose", message, code=failure.exit_code)
    print(client.format_diagnoses(results))
    return 0


def run_analyze_series(args: argparse.Namespace) -> int:
    """Analyses one series zip through the gateway and prints its findings."""
    from medimg_cli import client, series

    problems = client.unreadable_files([args.file])
    if problems:
        return _fail("analyze-series", "\n".join(problems), code=2)
    address = client.gateway_address(args.gateway, os.environ)
    progress = series.Progress(args.file.stat().st_size)
    try:
        response = series.analyze_series(
            address,
            args.file,
            disease=args.disease,
            timeout_s=args.timeout,
            on_sent=progress.sent,
            dicom_reports=args.dicom_out is not None,
        )
    except client.CallFailed as failure:
        progress.close()
        message = client.describe_failure(
            failure, subject=str(args.file), address=address, timeout_s=args.timeout
        )
        return _fail("analyze-series", message, code=failure.exit_code)
    progress.close()
    print(series.format_analysis(str(args.file), response))
    if args.dicom_out is not None:
        for path in series.write_reports(response, args.dicom_out):
            print(f"wrote {path}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    """Prints the diseases and models the gateway routes to."""
    from medimg_cli import client

    address = client.gateway_address(args.gateway, os.environ)
    try:
        models = client.list_models(address, timeout_s=args.timeout)
    except client.CallFailed as failure:
        message = client.describe_failure(
            failure, subject="ListModels", address=address, timeout_s=args.timeout
        )
        return _fail("models", message, code=failure.exit_code)
    print(client.format_models(models))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Runs the disease's trainer with the remaining arguments and returns its exit code."""
    if not args.disease.isidentifier():
        return _fail("train", f"not a disease name: {args.disease!r}", code=2)
    module_name = f"{args.disease}_service.train"
    plugin = components.BY_NAME.get(args.disease)
    if plugin is not None and plugin.package_dir is not None:
        # A plug-in scaffolded after `pip install -e .` is unknown to the installed finder.
        sys.path.insert(0, str(plugin.package_dir.parent))
    try:
        trainer = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # A missing dependency inside an existing trainer is a different problem: show it.
        if exc.name not in (module_name, f"{args.disease}_service"):
            raise
        return _fail("train", f"{args.disease} has no trainer (no module {module_name})", code=2)
    code: int = trainer.main(list(args.arguments))
    return code


def run_new_service(args: argparse.Namespace) -> int:
    """Scaffolds a disease service into the checkout and says what to do next."""
    from medimg_cli.scaffold.generate import plan_service
    from medimg_cli.scaffold.spec import ScaffoldError, build_spec

    root = args.root.resolve()
    try:
        spec = build_spec(
            root, name=args.name, labels=args.labels, framework=args.framework, port=args.port
        )
        plan = plan_service(root, spec)
        plan.write()
    except ScaffoldError as exc:
        return _fail("new-service", str(exc), code=2)
    labels = ", ".join(spec.labels)
    print(f"wrote {spec.module}/ ({spec.framework}, port {spec.port}, labels {labels})")
    for path in (*plan.created, *plan.edited):
        print(f"  {'added' if path in plan.created else 'edited'} {path}")
    for note in plan.notes:
        print(f"  note: {note}")
    print(
        "next:\n"
        f"  python -m {spec.module}.demo_model      # the demo model (not for clinical use)\n"
        f"  python -m pytest {spec.module} -q       # its tests\n"
        f"  medimg up                               # the stack, {spec.name} included\n"
        f"  medimg diagnose --disease {spec.name} image.png\n"
        "  see docs/adding-a-disease.md for training, model servers and Kubernetes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
