"""The tiny model's evaluation (``jobs/eval_tiny.py``): a held-out set from the tiny families,
and the analysis of a full-vote ``raysolve solve`` run on it (every sample is a pass@1 draw):

- pass@1: share of samples whose answer is correct;
- maj@N: share of problems whose plurality answer is correct;
- distinct answers per problem ("no answer" counts as one), share of samples with a code call;
- per-family pass@1 and maj@N; engine throughput (tokens/s, excluding start-up).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from raysolve.core.answers import is_correct
from raysolve.io.output import read_rows


def write_heldout(path: Path, seed: int, per_family: int) -> None:
    """A held-out set: ``per_family`` generated problems of each tiny family (JSONL with ids and families)."""
    from raysolve.tiny.families import FAMILIES, generate

    problems = generate(seed, per_family * len(FAMILIES))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, p in enumerate(problems):
            f.write(json.dumps({"id": f"{p.family}-{i}", "problem": p.problem, "answer": str(p.answer),
                                "family": p.family}) + "\n")


def analyse(heldout: Path, run_dir: Path) -> dict:
    """pass@1, maj@N, diversity and per-family accuracy of a full-vote ``raysolve solve`` run
    written to ``run_dir`` on ``heldout``, and its throughput from ``summary.json``."""
    family = {r["id"]: r["family"] for r in read_rows(heldout)}
    gold = {r["id"]: r["answer"] for r in read_rows(heldout)}
    problems = read_rows(run_dir / "problems.jsonl")
    samples = read_rows(run_dir / "samples.jsonl")
    per = defaultdict(lambda: {"problems": 0, "maj_correct": 0, "samples": 0, "sample_correct": 0})
    for r in problems:
        f = per[family[r["problem_id"]]]
        f["problems"] += 1
        f["maj_correct"] += bool(r["correct"])
    with_code = 0
    distinct: dict[str, set] = defaultdict(set)
    for s in samples:
        f = per[family[s["problem_id"]]]
        f["samples"] += 1
        f["sample_correct"] += is_correct(s["answer"], gold[s["problem_id"]])
        with_code += s["code_calls"] > 0
        distinct[s["problem_id"]].add(s["answer"])
    summary = json.loads((run_dir / "summary.json").read_text())
    n_samples = len(samples)
    return {
        "problems": len(problems),
        "samples": n_samples,
        "pass_at_1": sum(f["sample_correct"] for f in per.values()) / n_samples,
        "maj_at_n": sum(f["maj_correct"] for f in per.values()) / len(problems),
        "distinct_answers_per_problem": sum(len(v) for v in distinct.values()) / len(distinct),
        "share_samples_with_code_call": with_code / n_samples,
        "tokens_per_s": summary["this_run"]["tokens_per_s"],
        "generated_tokens": summary["generated_tokens"],
        "tool_output_tokens": summary["tool_output_tokens"],
        "wall_s": summary["this_run"]["wall_s"],
        "families": {
            name: {"problems": f["problems"], "maj_at_n": f["maj_correct"] / f["problems"],
                   "pass_at_1": f["sample_correct"] / f["samples"]}
            for name, f in sorted(per.items())
        },
    }
