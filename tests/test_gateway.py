"""The local gateway with plain predict functions (no Ray): what it checks and how it scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raysolve.competition.gateway import LocalGateway


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("id,problem,answer\na,What is 1+1?,2\nb,What is 2+2?,4\nc,What is 3+3?,1006\n")
    return path


def test_problems_arrive_one_at_a_time_as_series_and_are_scored(data, tmp_path):
    seen = []

    def predict(id_, problem):
        assert isinstance(id_, pd.Series) and isinstance(problem, pd.Series) and len(id_) == len(problem) == 1
        seen.append(id_.iloc[0])
        value = {"a": 2, "b": 5, "c": 6}[id_.iloc[0]]
        return pd.DataFrame({"id": [id_.iloc[0]], "answer": [value]})

    report = LocalGateway(data, modulus=1000).run(predict, out_dir=tmp_path / "out")
    assert seen == ["a", "b", "c"]
    assert (report.problems, report.graded, report.correct, report.invalid) == (3, 3, 2, 0)  # 1006 = 6 mod 1000
    assert report.score == pytest.approx(2 / 3)
    assert (tmp_path / "out" / "submission.csv").read_text().splitlines() == ["id,answer", "a,2", "b,5", "c,6"]
    assert json.loads((tmp_path / "out" / "gateway.json").read_text())["correct"] == 2


def test_shuffle_is_seeded(data):
    order = lambda seed: [r["id"] for r in LocalGateway(data, shuffle=True, seed=seed).run(lambda i, p: 0).rows]
    assert order(1) == order(1) and sorted(order(1)) == ["a", "b", "c"]


@pytest.mark.parametrize("prediction, why", [
    (pd.DataFrame({"id": ["a", "a"], "answer": [1, 2]}), "one row"),
    (pd.DataFrame({"id": ["z"], "answer": [1]}), "answered id 'z'"),
    (pd.DataFrame({"id": ["a"], "value": [1]}), "columns id, answer"),
    (2.0, "not an integer"),
    ("2", "not an integer"),
    (True, "not an integer"),
    (1000, "outside 0..999"),
    (-1, "outside 0..999"),
])
def test_predictions_the_server_would_reject(prediction, why):
    answer, problem = LocalGateway("unused", modulus=1000).check(prediction, "a")
    assert problem is not None and why in problem


def test_integers_of_any_kind_are_accepted():
    gateway = LocalGateway("unused", modulus=1000)
    assert gateway.check(np.int64(7), "a") == (7, None)
    assert gateway.check(pd.DataFrame({"id": ["a"], "answer": [np.int32(8)]}), "a") == (8, None)


def test_a_predict_that_raises_is_reported_and_the_run_goes_on(data):
    def predict(id_, problem):
        if id_.iloc[0] == "b":
            raise RuntimeError("out of memory")
        return 2

    report = LocalGateway(data).run(predict)
    assert report.problems == 3 and report.invalid == 1 and report.correct == 1
    assert "predict raised RuntimeError: out of memory" in report.rows[1]["invalid"]
