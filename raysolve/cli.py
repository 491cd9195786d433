"""raysolve: solve competition math with open models on Ray, by a majority vote of tool-using samples.

``raysolve solve INPUT`` loads problems (JSONL, Parquet, CSV, JSON or a `datasets`
path/name), solves them on a local Ray instance (or ``--address``), streams results
to ``--out`` and prints a summary; rerunning with the same ``--out`` resumes.
``raysolve aimo INPUT`` is competition mode: one problem at a time within a wall-clock
budget (``raysolve.competition.aimo``). ``raysolve serve`` runs the HTTP endpoint
(``raysolve.serve``). ``raysolve engine build RECIPE`` builds a TensorRT-LLM engine
(``raysolve.engines.recipes``). ``raysolve bench`` measures what the solver adds on top of
its engines (``raysolve.bench.orchestration``). ``raysolve replay TRACES`` replays per-sample traces under stop
policies and scheduling modes (``raysolve.core.replay``)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from raysolve.competition.budget import POLICIES
from raysolve.runtime.config import SolverConfig
from raysolve.engines import BACKENDS, NOT_MODELS
from raysolve.io.output import ResultWriter, RunSummary
from raysolve.io.problems import Fields, Problem, RowError, check_input, load_problems


MODEL_BACKENDS = sorted(set(BACKENDS) - NOT_MODELS)  # not the test engine or the benchmark load generator


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own flags, parsed there
        from raysolve.bench.orchestration import main as bench_main

        return bench_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "solve":
        return solve_command(args)
    if args.command == "replay":
        return replay_command(args)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "aimo":
        return aimo_command(args)
    if args.command == "engine":
        return engine_command(args)
    parser.print_help()
    return 2


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown after each flag's help (``None`` and ``False`` defaults are not defaults)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raysolve", description=__doc__.split("\n\n")[0], formatter_class=_Help)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("solve", help="solve a problem set and write results", formatter_class=_Help,
                       description="Solve a problem set; results stream to --out, and rerunning resumes.")
    s.add_argument("input", help="problems: .jsonl/.parquet/.csv/.json file, or a datasets path or hub name")
    s.add_argument("--out", help="output directory (default: runs/<input name>)")
    s.add_argument("--config", help="SolverConfig YAML; flags below override it")
    s.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    s.add_argument("--split", default="train", help="split of a datasets source")
    s.add_argument("--problem-field", help="column with the problem text (default: problem, question)")
    s.add_argument("--id-field", help="column with the problem id (default: id, problem_id; else the row number)")
    s.add_argument("--answer-field", help="column with the gold answer (default: answer, expected_answer, gold)")
    s.add_argument("--limit", type=int, help="solve at most this many problems")
    s.add_argument("--no-resume", action="store_true", help="start over instead of skipping finished problems")
    s.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl",
                   help="result files: JSONL, or Parquet shards (problems/, samples/) with a JSONL journal")
    s.add_argument("--shard-rows", type=int, default=1000, help="problems per Parquet shard")
    s.add_argument("--progress", choices=("auto", "bar", "log"), default="auto",
                   help="a progress bar, or a log line every --log-every s (auto: bar on a terminal)")
    s.add_argument("--log-every", type=float, default=10.0, help="seconds between progress lines and summary updates")
    g = _engine_flags(s)
    built_in = SolverConfig().scheduling
    g.add_argument("--samples", type=int, help=f"samples per problem, the vote's budget (default: {built_in.num_samples})")
    g.add_argument("--mode", choices=["pool", "wave", "launch-all"],
                   help=f"scheduling: samples in flight per problem as a pool, in waves, or all at once (default: {built_in.mode})")
    g.add_argument("--pool", type=int,
                   help=f"in-flight samples per problem in pool mode, the wave size in wave mode (default: {built_in.pool_size})")
    g.add_argument("--policy", help="stop policy: when the vote is settled and the other samples are cancelled, e.g. "
                                    f"'full', 'unbeatable|beta:0.95:min=3' (default: {built_in.stop_policy})")
    g.add_argument("--modulus", type=int, help="take integer answers modulo this (AIMO: 1000)")
    a = sub.add_parser("aimo", help="competition mode: answer problems one at a time within a time budget",
                       formatter_class=_Help, description="Competition mode: one problem at a time within a time budget.")
    a.add_argument("input", help="problems: .csv/.jsonl/.parquet/.json (columns id, problem, optional answer)")
    a.add_argument("--out", help="output directory (default: runs/aimo-<input name>, or runs/<input name> when it "
                                 "starts with 'aimo'); rerunning resumes")
    a.add_argument("--config", help="SolverConfig YAML; flags below override it")
    a.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    a.add_argument("--problem-field", help="column with the problem text (default: problem, question)")
    a.add_argument("--id-field", help="column with the problem id (default: id, problem_id; else the row number)")
    a.add_argument("--answer-field", help="column with the gold answer, for scoring (default: answer)")
    a.add_argument("--limit", type=int, help="answer at most this many problems (the first ones)")
    a.add_argument("--no-resume", action="store_true", help="start over instead of keeping answered problems")
    b = a.add_argument_group("time budget (see raysolve.competition.budget)")
    b.add_argument("--time-budget", type=float, help="seconds for the whole run (AIMO-2: 18000 for 50 problems)")
    b.add_argument("--per-problem", type=float, default=3.0,
                   help="without --time-budget: the budget is this many seconds times the problem count")
    b.add_argument("--budget-policy", choices=POLICIES, default="adaptive",
                   help="adaptive: unused time carried forward, samples sized to the deadline; fixed: even shares")
    b.add_argument("--samples", type=int, default=16, help="samples launched per problem (adaptive: the most)")
    b.add_argument("--min-samples", type=int, default=4, help="adaptive: the fewest samples launched")
    b.add_argument("--policy", default="unbeatable|latency", help="early-stop rule (a stop policy spec)")
    b.add_argument("--stragglers", type=int, default=0,
                   help="cancel the last K running samples once the others have finished (0: off)")
    b.add_argument("--cap", type=float, default=1.6, help="adaptive: most time per problem, in even shares")
    b.add_argument("--reserve", type=float,
                   help="seconds held back from the whole run for writing the results (default: 1%% of it)")
    b.add_argument("--startup-free", action="store_true",
                   help="start the clock after the engines are up (the competition counts start-up)")
    b.add_argument("--modulus", type=int, default=1000, help="answers are integers modulo this (AIMO-3: 100000)")
    b.add_argument("--fallback-answer", type=int, default=0, help="answer when no sample voted in time")
    _engine_flags(a)
    v = sub.add_parser("serve", help="serve POST /v1/solve over HTTP (Ray Serve; Ctrl-C stops)", formatter_class=_Help)
    v.add_argument("--config", help="SolverConfig YAML (default: the embedded default engine)")
    v.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    v.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0 for all interfaces)")
    v.add_argument("--port", type=int, default=8000, help="listen port")
    v.add_argument("--max-ongoing-requests", type=int, default=32, help="requests solved at once")
    v.add_argument("--max-queued-requests", type=int, default=64, help="requests waiting; beyond: 503")
    e = sub.add_parser("engine", help="engine recipes: build a TensorRT-LLM engine or checkpoint")
    eb = e.add_subparsers(dest="engine_command", required=True).add_parser(
        "build", help="follow a recipe's build: section (calibrate, quantize, build), printing each step")
    eb.add_argument("recipe", help="an engines/*.yaml file with a build: section")
    eb.add_argument("--dry-run", action="store_true", help="print the steps and check the inputs; run nothing")
    sub.add_parser("bench", add_help=False,  # its own parser: raysolve.bench.orchestration
                   help="orchestration benchmarks: engine alone vs solver, cancellation, scaling (--help)")
    r = sub.add_parser("replay", help="replay per-sample traces under stop policies and scheduling modes",
                       formatter_class=_Help)
    r.add_argument("traces", help="per-sample traces: .jsonl[.gz]/.csv/.parquet (a run's samples.jsonl)")
    r.add_argument("--gold", help="problems file with gold answers (default: problems.jsonl beside the traces)")
    r.add_argument("--policy", action="append", help="stop policy spec; repeat for several (default: a standard set)")
    r.add_argument("--mode", action="append", help="pool:K, wave:K or launch-all; repeat (default: pool:1 pool:4 pool:8 wave:8 launch-all)")
    r.add_argument("--orderings", type=int, default=20, help="random launch orders per problem")
    r.add_argument("--budget", type=int, help="samples per problem (a random subset per ordering; default: all)")
    r.add_argument("--seed", type=int, default=0, help="seed of the random launch orders")
    r.add_argument("--modulus", type=int, help="integer answers vote and grade modulo this (AIMO: 1000)")
    r.add_argument("--raw-answers", action="store_true",
                   help="vote on the answer strings as they are, not on their vote keys (as the solver votes)")
    r.add_argument("--out", default="runs/replay", help="folder for replay.json, replay.csv, replay.png")
    return p


def _engine_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    built_in = SolverConfig()
    g = parser.add_argument_group("engine and samples (override the config; defaults are the built-in config's)")
    g.add_argument("--model", help="model path for the engine (default: the embedded tiny model)")
    g.add_argument("--backend", choices=MODEL_BACKENDS, help=f"engine backend (default: {built_in.engine.backend})")
    g.add_argument("--engines", type=_actor_count,
                   help=f"number of engine actors, or 'auto': one per --gpus-per-engine GPUs (default: {built_in.engine.num_actors})")
    g.add_argument("--gpus-per-engine", type=float, help="GPUs each engine actor holds, the tensor-parallel size (default: 0, CPU)")
    g.add_argument("--max-tokens", type=int,
                   help=f"token budget per sample, tool output included (default: {built_in.budget.max_tokens})")
    g.add_argument("--max-code-calls", type=int, help=f"code calls per sample (default: {built_in.budget.max_code_calls})")
    g.add_argument("--temperature", type=float,
                   help=f"sampling temperature; 0 is greedy, which one sample per problem needs (default: {built_in.sampling.temperature})")
    g.add_argument("--seed", type=int, help=f"base seed: each sample's seed derives from it, so a rerun draws the same samples "
                                            f"(default: {built_in.seed})")
    g.add_argument("--keep-text", action="store_true", help="store generated texts in samples.jsonl")
    return g


def aimo_command(args: argparse.Namespace) -> int:
    """``raysolve aimo``: competition mode, the log and submission under ``--out``."""
    from raysolve.competition.aimo import run_offline
    from raysolve.competition.budget import make_policy

    try:
        cfg = build_config(args, scheduling=False)
    except ValueError as exc:
        print(f"raysolve: bad configuration: {config_error(exc, args.config)}", file=sys.stderr)
        return 2
    fields = Fields.of(args.problem_field, args.id_field, args.answer_field)
    check = check_input(args.input, fields)  # before anything starts: one clear line, exit 2
    if check.error:
        print(f"raysolve: {check.error}", file=sys.stderr)
        return 2
    problems: list[Problem] = []
    for item in load_problems(args.input, fields):
        if isinstance(item, RowError):
            print(f"raysolve: skipped row {item.row}: {item.reason}", file=sys.stderr, flush=True)
        elif args.limit is None or len(problems) < args.limit:
            problems.append(item)
    if not problems:
        print(f"raysolve: no problems in {args.input}", file=sys.stderr)
        return 2
    total_s = args.time_budget or args.per_problem * len(problems)
    try:
        policy = make_policy(args.budget_policy, total_s, len(problems), samples=args.samples,
                             min_samples=args.min_samples, stop_policy=args.policy, stragglers=args.stragglers,
                             cap=args.cap, reserve_s=0.01 * total_s if args.reserve is None else args.reserve)
    except ValueError as exc:
        print(f"raysolve: bad budget: {exc}", file=sys.stderr)
        return 2
    stem = Path(args.input).stem
    out_dir = Path(args.out or Path("runs") / (stem if stem.startswith("aimo") else f"aimo-{stem}"))
    _quiet_ray_token_notice(args.address)
    summary = run_offline(problems, cfg, total_s=total_s, policy=policy, out_dir=out_dir, modulus=args.modulus,
                          fallback_answer=args.fallback_answer, resume=not args.no_resume,
                          startup_counts=not args.startup_free, address=args.address)
    score = "n/a" if summary["score"] is None else f"{summary['score']:.1%} ({summary['correct']}/{summary['graded']})"
    print(f"score {score}; {summary['elapsed_s']:.1f} s of {summary['budget_s']:.0f} s; "
          f"answers: {summary['answer_sources']}; results in {out_dir}/ (problems.jsonl, submission.csv, "
          "summary.json, time-per-problem.png)")
    return 0 if summary["within_budget"] else 1


def engine_command(args: argparse.Namespace) -> int:
    """``raysolve engine build RECIPE``: see ``raysolve.engines.recipes``."""
    from pydantic import ValidationError

    from raysolve.engines import recipes

    try:
        return recipes.run(args.recipe, dry_run=args.dry_run)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"raysolve engine build: {exc}", file=sys.stderr)
        return 2


def serve_command(args: argparse.Namespace) -> int:
    """``raysolve serve``: the Serve app in the foreground until Ctrl-C."""
    import ray
    from ray import serve

    from raysolve.serve import build

    _quiet_ray_token_notice(args.address)
    ray.init(address=args.address, include_dashboard=False, configure_logging=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build({"config": args.config, "max_ongoing_requests": args.max_ongoing_requests,
                 "max_queued_requests": args.max_queued_requests})
    serve.run(app, name="raysolve", route_prefix="/")
    print(f"raysolve serving on http://{args.host}:{args.port} (docs: /docs, schema: /openapi.json); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        serve.shutdown()
        ray.shutdown()
    return 0


def replay_command(args: argparse.Namespace) -> int:
    """``raysolve replay``: the table on stdout, the files in ``--out``."""
    import platform

    from raysolve.core.replay import (DEFAULT_MODES, DEFAULT_POLICIES, format_table, load_traces, parse_mode, replay,
                                      trace_warnings, write_report)
    from raysolve.core.voting import parse_policy

    try:
        policies = [parse_policy(p) for p in (args.policy or DEFAULT_POLICIES)]
        modes = [parse_mode(m) for m in (args.mode or DEFAULT_MODES)]
        traces = load_traces(args.traces, args.gold, raw_answers=args.raw_answers, modulus=args.modulus)
        warnings = trace_warnings(args.traces, traces, args.gold)
    except (ValueError, OSError) as exc:
        print(f"raysolve replay: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"raysolve replay: warning: {warning}", file=sys.stderr)
    sizes = sorted({len(t.samples) for t in traces})
    started = time.perf_counter()
    rows = replay(traces, policies, modes, orderings=args.orderings, seed=args.seed, budget=args.budget,
                  modulus=args.modulus)
    if not rows:
        print("raysolve replay: no problem has enough samples for the budget", file=sys.stderr)
        return 2
    print(format_table(rows))
    budget = args.budget or (sizes[0] if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}")
    meta = {
        "command": "raysolve replay " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["replay"] else "raysolve replay",
        "traces": str(args.traces), "problems": len(traces), "budget": budget, "orderings": args.orderings,
        "warnings": warnings,
        "seed": args.seed, "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.node()}",
        "replay_s": round(time.perf_counter() - started, 1),
        "title": f"{Path(args.traces).name}: {len(traces)} problems × {budget} samples, {args.orderings} orders each",
    }
    write_report(rows, Path(args.out), meta)
    print(f"\n{len(traces)} problems × {budget} samples, {args.orderings} orderings each, "
          f"in {meta['replay_s']} s; written to {args.out}/ (replay.json, replay.csv, replay.png)")
    return 0


def _actor_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


_FLAG_OF = {
    "num_samples": "--samples", "mode": "--mode", "pool_size": "--pool", "stop_policy": "--policy",
    "max_tokens": "--max-tokens", "max_code_calls": "--max-code-calls", "temperature": "--temperature",
    "num_actors": "--engines", "num_gpus": "--gpus-per-engine", "backend": "--backend", "modulus": "--modulus",
    "seed": "--seed",
}
"""The CLI flag that sets each config field, for error messages."""


def config_error(exc: Exception, config_file: str | None = None) -> str:
    """A configuration error in the words of the command line: the flag (or the config file's
    field) and pydantic's reason, one per line, instead of a validation dump."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for error in errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = loc[-1] if loc else ""
        where = _FLAG_OF.get(field) if len(loc) == 1 else None
        if where is None:
            where = ".".join(loc) + (f" (in {config_file})" if config_file else "")
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def _quiet_ray_token_notice(address: str | None) -> None:
    """A Ray instance this command starts itself turns token authentication on (Ray's default
    for local clusters, a token made on first use) and says so on every command; that notice is
    not news to a user of this command, so its logger is turned down. Nothing about the
    authentication itself changes (setting ``RAY_AUTH_MODE`` here would be too late: Ray reads it
    at import)."""
    import logging

    if address is None and not os.environ.get("RAY_ADDRESS"):
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def build_config(args: argparse.Namespace, scheduling: bool = True) -> SolverConfig:
    """The config file, then the flags that were given (``scheduling``: also the sample flags,
    which ``raysolve aimo`` hands to its budget policy instead)."""
    cfg = SolverConfig.load(args.config) if args.config else SolverConfig()
    engine_options = dict(cfg.engine.options)
    if args.model:
        engine_options["model"] = args.model
    updates = {
        ("engine", "backend"): args.backend,
        ("engine", "num_actors"): args.engines,
        ("engine", "num_gpus"): args.gpus_per_engine,
        ("engine", "options"): engine_options,
        ("budget", "max_tokens"): args.max_tokens,
        ("budget", "max_code_calls"): args.max_code_calls,
        ("sampling", "temperature"): args.temperature,
    }
    if scheduling:
        updates.update({
            ("scheduling", "num_samples"): args.samples,
            ("scheduling", "mode"): args.mode,
            ("scheduling", "pool_size"): args.pool,
            ("scheduling", "stop_policy"): args.policy,
        })
    for (section, name), value in updates.items():
        if value is not None:
            setattr(getattr(cfg, section), name, value)
    if args.modulus is not None:
        cfg.modulus = args.modulus  # raysolve aimo also passes it to each problem
    if args.seed is not None:
        cfg.seed = args.seed
    if args.keep_text:
        cfg.keep_text = True
    return cfg


def solve_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from raysolve.runtime.solver import Solver

    try:
        cfg = build_config(args)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        print(f"raysolve: bad configuration: {config_error(exc, args.config)}", file=sys.stderr)
        return 2
    source = args.input
    fields = Fields.of(args.problem_field, args.id_field, args.answer_field)
    check = check_input(source, fields, split=args.split)  # before Ray and the model start: one clear line
    if check.error:
        print(f"raysolve: {check.error}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or Path("runs") / Path(source).stem)
    writer = ResultWriter(out_dir, resume=not args.no_resume,
                          shard_rows=args.shard_rows if args.format == "parquet" else None)
    total = writer.previous  # earlier runs' totals; this run's results are added below
    this_run = RunSummary()
    rows_in_input = check.rows
    use_bar = args.progress == "bar" or (args.progress == "auto" and sys.stderr.isatty())
    report = ProgressReport(rows_in_input, total.problems, args.limit)

    def todo() -> Iterator[Problem]:
        taken = 0
        for item in load_problems(source, fields, split=args.split):
            if isinstance(item, RowError):
                this_run.skip(item.reason)
                writer.write_error(item, source)
                print(f"raysolve: skipped row {item.row}: {item.reason}", file=sys.stderr, flush=True)
                continue
            if item.id in writer.done_ids:
                continue
            if args.limit is not None and taken >= args.limit:
                return
            taken += 1
            yield item

    def summary_extra(status: str, startup_s: float, coordinator: dict[str, Any] | None = None,
                      sandboxes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        total.skipped_rows, total.skip_reasons = this_run.skipped_rows, this_run.skip_reasons
        total.failed_problems = this_run.failed_problems
        # Throughput over all runs is unknown once earlier runs' rows are included; "this_run" has it.
        total.wall_s = 0.0 if total.resumed_problems else this_run.wall_s
        return {"status": status, "this_run": this_run.to_dict(), "config": json.loads(cfg.model_dump_json()),
                "input": str(source), "input_rows": rows_in_input, "format": args.format,
                "coordinator": coordinator, "sandboxes": sandboxes, "startup_s": round(startup_s, 2)}

    pending = todo()
    first = next(pending, None)  # read up to the first problem left to solve, once
    if first is None and args.limit != 0:
        # Everything is done already: say so without starting Ray and the engines.
        writer.close()
        print(f"raysolve: nothing left to solve: {total.problems} problems are done in {out_dir}/ "
              f"(accuracy {'n/a' if total.accuracy is None else f'{total.accuracy:.1%}'}; --no-resume starts over)")
        return 0
    boot = time.perf_counter()
    _quiet_ray_token_notice(args.address)
    with Solver(cfg, address=args.address) as solver:
        started = time.perf_counter()  # throughput excludes Ray start-up and model loading
        startup_s = started - boot
        print(f"raysolve: started in {startup_s:.1f} s; {total.problems} problems done earlier; "
              f"input rows: {rows_in_input if rows_in_input is not None else 'unknown'}", flush=True)
        bar = tqdm(desc="problems", unit="pb", dynamic_ncols=True, file=sys.stderr) if use_bar else None
        last_log = time.perf_counter()
        try:
            for result in solver.solve_iter(itertools.chain([first] if first else [], pending)):
                if result.failure is not None:  # not done: a rerun solves it again
                    writer.write_failed(result)
                    this_run.failed_problems += 1
                    print(f"raysolve: problem {result.problem_id} failed: {result.failure}", file=sys.stderr, flush=True)
                    continue
                writer.write(result)
                row = result.to_row()
                total.add(row)
                this_run.add(row)
                this_run.wall_s = time.perf_counter() - started
                if bar is not None:
                    bar.update(1)
                    acc = f"{this_run.correct}/{this_run.graded}" if this_run.graded else "-"
                    bar.set_postfix(correct=acc, tok_s=f"{this_run.tokens_per_s:.0f}")
                if time.perf_counter() - last_log >= args.log_every:
                    last_log = time.perf_counter()
                    if bar is None:
                        print(report.line(total, this_run), flush=True)
                    writer.write_summary(total, summary_extra("running", startup_s))
        except (KeyboardInterrupt, SystemExit) as stop:
            # Ctrl-C, or SIGTERM (`ray job stop`: Ray's driver handler exits with 15): what is
            # done is on disk, the summary says so, and the same command resumes.
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if bar is not None:
                bar.close()
            this_run.wall_s = time.perf_counter() - started
            writer.close()
            writer.write_summary(total, summary_extra("stopped", startup_s))
            print(f"raysolve: stopped; {total.problems} problems are in {out_dir}/, the same command resumes",
                  file=sys.stderr, flush=True)
            return 130 if isinstance(stop, KeyboardInterrupt) else 143
        solver.engines_ready(timeout_s=60)  # a restarted engine first closes its old sandbox sessions
        stats = solver.stats()
    if bar is not None:
        bar.close()
    this_run.wall_s = time.perf_counter() - started
    if bar is None:
        print(report.line(total, this_run), flush=True)
    writer.close()
    writer.write_summary(total, summary_extra("finished", startup_s, stats["coordinator"], stats["sandboxes"]))
    print("\n".join(this_run.lines()))
    print(f"start-up      {startup_s:.1f} s (Ray, sandbox and engine actors, model loading)")
    if total.resumed_problems:
        print(f"all runs      {total.problems} problems, accuracy "
              f"{'n/a' if total.accuracy is None else f'{total.accuracy:.1%}'}")
    files = "problems/, samples/ (Parquet)" if args.format == "parquet" else "problems.jsonl, samples.jsonl"
    print(f"results in    {out_dir}/ ({files}, errors.jsonl, failed.jsonl, summary.json)")
    return 1 if this_run.failed_problems else 0


class ProgressReport:
    """One log line for job logs: problems done, accuracy so far, tokens/s, ETA."""

    def __init__(self, rows_in_input: int | None, done_before: int, limit: int | None) -> None:
        self.rows = rows_in_input
        self.done_before = done_before
        self.limit = limit

    def line(self, total: RunSummary, this_run: RunSummary) -> str:
        goal = self.rows - this_run.skipped_rows if self.rows is not None else None
        if self.limit is not None:
            goal = min(goal, self.done_before + self.limit) if goal is not None else self.done_before + self.limit
        done = total.problems
        rate = this_run.problems / this_run.wall_s if this_run.wall_s else 0.0
        parts = [f"progress: {done}/{goal if goal is not None else '?'} problems"]
        if goal:
            parts[0] += f" ({done / goal:.1%})"
        acc = f"{total.accuracy:.1%} ({total.correct}/{total.graded})" if total.graded else "n/a"
        parts += [f"accuracy {acc}", f"{this_run.tokens_per_s:.0f} tokens/s", f"{rate:.2f} problems/s"]
        if goal is not None and rate > 0:
            parts.append(f"ETA {_duration(max(goal - done, 0) / rate)}")
        if this_run.skipped_rows:
            parts.append(f"{this_run.skipped_rows} rows skipped")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


if __name__ == "__main__":
    raise SystemExit(main())
