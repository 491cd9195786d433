"""Table and plot of ``jobs/gpu_smoke.py`` results: throughput per layout, engine alone vs solver.

    python jobs/plot_gpu_smoke.py results/gpu-smoke

Reads ``<dir>/<layout>.json`` and writes ``<dir>/throughput.csv`` and ``<dir>/gpu-smoke.png``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

LAYOUT_NAMES = {"1x1": "1 actor, 1 GPU (tp=1)", "2x1": "2 actors, 1 GPU each", "1x2": "1 actor, GPU pair (tp=2)"}


def main(folder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    rows = []
    for layout in LAYOUT_NAMES:
        path = out / f"{layout}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        t = r["throughput"]
        rows.append({
            "layout": layout, "description": LAYOUT_NAMES[layout],
            "engine_alone_tok_s": t["engine_alone"]["tokens_per_s"], "solver_tok_s": t["solver"]["tokens_per_s"],
            "solver_over_engine": t["solver_over_engine"], "tokens": t["solver"]["tokens"],
            "abort_to_scheduler_drop_ms_p50": r["abort"]["abort_to_scheduler_drop_ms"]["p50"],
            "abort_to_scheduler_drop_ms_p95": r["abort"]["abort_to_scheduler_drop_ms"]["p95"],
            "settle_cancel_to_stopped_ms_p50": r["cancel_on_settle"]["cancel_to_stopped_ms"]["p50"],
            "settle_cancel_to_stopped_ms_p95": r["cancel_on_settle"]["cancel_to_stopped_ms"]["p95"],
            "checks_passed": all(r["checks"].values()),
        })
    with open(out / "throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r["engine_alone_tok_s"] for r in rows], 0.4, label="engine alone")
    ax1.bar([i + 0.2 for i in x], [r["solver_tok_s"] for r in rows], 0.4, label="full solver")
    for i, r in enumerate(rows):
        ax1.text(i + 0.2, r["solver_tok_s"], f"×{r['solver_over_engine']:.2f}", ha="center", va="bottom", fontsize=9)
    ax1.set_xticks(list(x), [r["description"] for r in rows], fontsize=8)
    ax1.set_ylabel("generated tokens/s")
    ax1.set_title("vLLM 0.25, Qwen2.5-1.5B-shaped (random weights), H200\n1024 samples × 512 tokens per actor")
    ax1.legend()
    ax2.bar([i - 0.2 for i in x], [r["abort_to_scheduler_drop_ms_p95"] for r in rows], 0.4,
            label="abort → scheduler drops it (p95)")
    ax2.bar([i + 0.2 for i in x], [r["settle_cancel_to_stopped_ms_p95"] for r in rows], 0.4,
            label="vote settled → sample stopped (p95, 256 at once)")
    ax2.set_xticks(list(x), [r["description"] for r in rows], fontsize=8)
    ax2.set_ylabel("ms")
    top = max(max(r["abort_to_scheduler_drop_ms_p95"], r["settle_cancel_to_stopped_ms_p95"]) for r in rows)
    ax2.set_ylim(0, top * 1.45)
    ax2.set_title("Cancellation latency")
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "gpu-smoke.png", dpi=120)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/gpu-smoke")
