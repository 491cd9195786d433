"""How a competition notebook uses raysolve (AIMO-style: one problem per call, integer answers).

Locally this runs the set through ``LocalGateway`` and prints the score:

    python examples/kaggle_notebook.py examples/aimo-heldout.csv --time-budget 200

On Kaggle the same ``predictor`` is handed to the competition's inference server
instead (the commented lines at the end). The engines start once, when the predictor
is made; the budget counts from then, as the competition's clock does.
"""

import argparse
import os

from raysolve.competition.aimo import Predictor
from raysolve.runtime.config import SolverConfig
from raysolve.competition.gateway import LocalGateway

p = argparse.ArgumentParser()
p.add_argument("data", nargs="?", default="examples/aimo-heldout.csv")
p.add_argument("--time-budget", type=float, default=200.0, help="seconds for the whole run, start-up included")
p.add_argument("--problems", type=int, default=60, help="how many problems the server will send")
p.add_argument("--config", help="SolverConfig YAML (default: the embedded tiny engine)")
args = p.parse_args()

config = SolverConfig.load(args.config) if args.config else SolverConfig()
predictor = Predictor(config, total_s=args.time_budget, problems=args.problems, samples=16,
                      stragglers=2, modulus=1000, out_dir="runs/notebook")

if os.getenv("KAGGLE_IS_COMPETITION_RERUN"):
    import kaggle_evaluation.aimo_2_inference_server as server  # the competition's own package

    server.AIMO2InferenceServer(predictor.predict).serve()
else:
    report = LocalGateway(args.data, modulus=1000).run(predictor.predict, out_dir="runs/notebook/gateway")
    predictor.close()
    print(f"score {report.score:.1%} ({report.correct}/{report.graded}), {report.invalid} invalid answers, "
          f"{report.wall_s:.0f} s; log in runs/notebook/, submission in runs/notebook/gateway/")
