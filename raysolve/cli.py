"""The ``raysolve`` command.

``raysolve replay TRACES`` replays per-sample traces under stop policies and
scheduling modes (see ``raysolve.replay``). ``raysolve solve INPUT`` loads problems (JSONL, Parquet, CSV, JSON or a `datasets`
path/name), solves them on a local Ray instance (or ``--address``), streams results
to ``--out`` and prints a summary. Rerunning with the same ``--out`` resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from raysolve.config import SolverConfig
from raysolve.engines import BACKENDS
from raysolve.output import ResultWriter, RunSummary
from raysolve.problems import Fields, Problem, RowError, load_problems


MODEL_BACKENDS = sorted(name for name in BACKENDS if name != "scripted")  # scripted: the test engine


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "solve":
        return solve_command(args)
    if args.command == "replay":
        return replay_command(args)
    if args.command == "serve":
        return serve_command(args)
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raysolve", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("solve", help="solve a problem set and write results")
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
    g = s.add_argument_group("solver (override the config)")
    g.add_argument("--model", help="model path for the engine (default: the embedded tiny model)")
    g.add_argument("--backend", choices=MODEL_BACKENDS, help="engine backend")
    g.add_argument("--engines", type=_actor_count, help="number of engine actors, or 'auto' (one per --gpus-per-engine GPUs)")
    g.add_argument("--gpus-per-engine", type=float, help="GPUs each engine actor holds (the tensor-parallel size; 0: CPU)")
    g.add_argument("--samples", type=int, help="samples per problem (vote budget)")
    g.add_argument("--mode", choices=["pool", "wave", "launch-all"], help="scheduling mode")
    g.add_argument("--pool", type=int, help="in-flight samples per problem in pool mode (the wave size in wave mode)")
    g.add_argument("--policy", help="stop policy, e.g. 'default', 'full', 'unbeatable|beta:0.95:min=3'")
    g.add_argument("--max-tokens", type=int, help="token budget per sample (incl. tool output)")
    g.add_argument("--max-code-calls", type=int, help="code calls per sample")
    g.add_argument("--temperature", type=float)
    g.add_argument("--modulus", type=int, help="take integer answers modulo this (AIMO: 1000)")
    g.add_argument("--seed", type=int)
    g.add_argument("--keep-text", action="store_true", help="store generated texts in samples.jsonl")
    v = sub.add_parser("serve", help="serve POST /v1/solve over HTTP (Ray Serve; Ctrl-C stops)")
    v.add_argument("--config", help="SolverConfig YAML (default: the embedded default engine)")
    v.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    v.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0 for all interfaces)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--max-ongoing-requests", type=int, default=32, help="requests solved at once")
    v.add_argument("--max-queued-requests", type=int, default=64, help="requests waiting; beyond: 503")
    r = sub.add_parser("replay", help="replay per-sample traces under stop policies and scheduling modes")
    r.add_argument("traces", help="per-sample traces: .jsonl[.gz]/.csv/.parquet (a run's samples.jsonl)")
    r.add_argument("--gold", help="problems file with gold answers (default: problems.jsonl beside the traces)")
    r.add_argument("--policy", action="append", help="stop policy spec; repeat for several (default: a standard set)")
    r.add_argument("--mode", action="append", help="pool:K, wave:K or launch-all; repeat (default: pool:1 pool:4 pool:8 wave:8 launch-all)")
    r.add_argument("--orderings", type=int, default=20, help="random launch orders per problem")
    r.add_argument("--budget", type=int, help="samples per problem (a random subset per ordering; default: all)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--modulus", type=int, help="grade integer answers modulo this")
    r.add_argument("--out", default="runs/replay", help="folder for replay.json, replay.csv, replay.png")
    return p


def serve_command(args: argparse.Namespace) -> int:
    """``raysolve serve``: the Serve app in the foreground until Ctrl-C."""
    import ray
    from ray import serve

    from raysolve.serve import build

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
        serve.shutdown()
        ray.shutdown()
    return 0


def replay_command(args: argparse.Namespace) -> int:
    """``raysolve replay``: the table on stdout, the files in ``--out``."""
    import platform

    from raysolve.replay import DEFAULT_MODES, DEFAULT_POLICIES, format_table, load_traces, parse_mode, replay, write_report
    from raysolve.voting import parse_policy

    try:
        policies = [parse_policy(p) for p in (args.policy or DEFAULT_POLICIES)]
        modes = [parse_mode(m) for m in (args.mode or DEFAULT_MODES)]
        traces = load_traces(args.traces, args.gold)
    except (ValueError, OSError) as exc:
        print(f"raysolve replay: {exc}", file=sys.stderr)
        return 2
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


def build_config(args: argparse.Namespace) -> SolverConfig:
    """The config file, then the flags that were given."""
    cfg = SolverConfig.load(args.config) if args.config else SolverConfig()
    engine_options = dict(cfg.engine.options)
    if args.model:
        engine_options["model"] = args.model
    updates = {
        ("engine", "backend"): args.backend,
        ("engine", "num_actors"): args.engines,
        ("engine", "num_gpus"): args.gpus_per_engine,
        ("engine", "options"): engine_options,
        ("scheduling", "num_samples"): args.samples,
        ("scheduling", "mode"): args.mode,
        ("scheduling", "pool_size"): args.pool,
        ("scheduling", "stop_policy"): args.policy,
        ("budget", "max_tokens"): args.max_tokens,
        ("budget", "max_code_calls"): args.max_code_calls,
        ("sampling", "temperature"): args.temperature,
    }
    for (section, name), value in updates.items():
        if value is not None:
            setattr(getattr(cfg, section), name, value)
    if args.modulus is not None:
        cfg.modulus = args.modulus
    if args.seed is not None:
        cfg.seed = args.seed
    if args.keep_text:
        cfg.keep_text = True
    return cfg


def solve_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from raysolve.solver import Solver

    try:
        cfg = build_config(args)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        print(f"raysolve: bad configuration: {exc}", file=sys.stderr)
        return 2
    source = args.input
    if not Path(source).exists() and Path(source).suffix in (".jsonl", ".json", ".csv", ".parquet"):
        print(f"raysolve: input not found: {source}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or Path("runs") / Path(source).stem)
    fields = Fields.of(args.problem_field, args.id_field, args.answer_field)
    writer = ResultWriter(out_dir, resume=not args.no_resume)
    total = RunSummary(resumed_problems=len(writer.previous_rows))
    for row in writer.previous_rows:
        total.add(row)
    this_run = RunSummary()

    def todo() -> Iterator[Problem]:
        taken = 0
        for item in load_problems(source, fields, split=args.split):
            if isinstance(item, RowError):
                this_run.skipped_rows += 1
                writer.write_error(item, source)
                tqdm.write(f"raysolve: skipped row {item.row}: {item.reason}", file=sys.stderr)
                continue
            if item.id in writer.done_ids:
                continue
            if args.limit is not None and taken >= args.limit:
                return
            taken += 1
            yield item

    boot = time.perf_counter()
    with Solver(cfg, address=args.address) as solver:
        started = time.perf_counter()  # throughput excludes Ray start-up and model loading
        startup_s = started - boot
        bar = tqdm(desc="problems", unit="pb", dynamic_ncols=True, file=sys.stderr)
        for result in solver.solve_iter(todo()):
            writer.write(result)
            row = result.to_row()
            total.add(row)
            this_run.add(row)
            this_run.wall_s = time.perf_counter() - started
            bar.update(1)
            acc = f"{this_run.correct}/{this_run.graded}" if this_run.graded else "-"
            bar.set_postfix(correct=acc, tok_s=f"{this_run.tokens_per_s:.0f}")
        stats = solver.stats()
    bar.close()
    this_run.wall_s = time.perf_counter() - started
    total.skipped_rows = this_run.skipped_rows
    # Throughput over all runs is unknown once earlier runs' rows are included; "this_run" has it.
    total.wall_s = 0.0 if total.resumed_problems else this_run.wall_s
    writer.write_summary(total, {
        "this_run": this_run.to_dict(),
        "config": json.loads(cfg.model_dump_json()),
        "input": str(source),
        "coordinator": stats["coordinator"],
        "startup_s": round(startup_s, 2),
    })
    writer.close()
    print("\n".join(this_run.lines()))
    print(f"start-up      {startup_s:.1f} s (Ray, sandbox and engine actors, model loading)")
    if total.resumed_problems:
        print(f"all runs      {total.problems} problems, accuracy "
              f"{'n/a' if total.accuracy is None else f'{total.accuracy:.1%}'}")
    print(f"results in    {out_dir}/ (problems.jsonl, samples.jsonl, errors.jsonl, summary.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
