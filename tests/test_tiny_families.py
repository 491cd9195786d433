"""Tests for the tiny model's problem families (raysolve.tiny.families)."""

from __future__ import annotations

import ast
import random
import re

import pytest

from raysolve.tiny.families import FAMILIES, TinyProblem, generate


@pytest.fixture(scope="module")
def interpreter():
    from raysolve.sandbox.restricted import Interpreter

    return Interpreter()


def _run(interpreter, problem: TinyProblem) -> list[dict]:
    """Run the steps in order in a fresh session (fresh globals) of one interpreter."""
    interpreter.globals = interpreter._fresh_globals()
    interpreter.sources = {}
    return [interpreter.run(step.code, cell) for cell, step in enumerate(problem.steps)]


def _assigned(code: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef,)):
            names.add(node.name)
    return names


def _loaded(code: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def test_generate_deterministic_and_seed_dependent():
    a, b = generate(123, 60), generate(123, 60)
    assert a == b
    c = generate(124, 60)
    assert [p.problem for p in a] != [p.problem for p in c]
    assert len(a) == 60


def test_generate_balanced_and_filtered():
    problems = generate(7, 3 * len(FAMILIES))
    counts = {name: 0 for name in FAMILIES}
    for p in problems:
        counts[p.family] += 1
    assert set(counts.values()) == {3}
    only = generate(7, 10, ["totient", "gcd_lcm"])
    assert {p.family for p in only} == {"totient", "gcd_lcm"}
    with pytest.raises(KeyError):
        generate(0, 1, ["no_such_family"])


def test_family_count():
    assert len(FAMILIES) >= 27


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_phrasings_and_answers(name):
    rng = random.Random(sum(map(ord, name)))
    problems = [FAMILIES[name](rng) for _ in range(50)]
    templates = {re.sub(r"-?\d+", "#", p.problem) for p in problems}
    assert len(templates) >= 3
    assert len({p.problem for p in problems}) >= 45  # wide ranges
    for p in problems:
        assert p.family == name
        assert isinstance(p.answer, int) and not isinstance(p.answer, bool)
        assert 1 <= len(p.steps) <= 3
        assert p.closing
        for step in p.steps:
            assert step.thought and len(step.thought.split()) <= 15
            assert step.code.strip()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_steps_execute_to_reference(interpreter, name):
    rng = random.Random(1000 + len(name))
    for _ in range(8):
        problem = FAMILIES[name](rng)
        results = _run(interpreter, problem)
        for step, result in zip(problem.steps, results):
            failed = result["status"] == "error"
            assert failed == step.expect_error, (problem.problem, step.code, result["stderr"])
        last_line = results[-1]["stdout"].strip().splitlines()[-1]
        assert int(last_line) == problem.answer, (problem.problem, [s.code for s in problem.steps], results[-1])


def test_error_recovery_steps_fail_in_sandbox(interpreter):
    seen = set()
    rng = random.Random(99)
    for name in FAMILIES:
        for _ in range(120):
            problem = FAMILIES[name](rng)
            if any(step.expect_error for step in problem.steps):
                assert not problem.steps[-1].expect_error
                results = _run(interpreter, problem)
                assert results[0]["status"] == "error"
                assert results[-1]["status"] == "ok"
                seen.add(name)
                break
    assert len(seen) >= 3, seen


def test_state_sharing_two_cell_families():
    sharing = set()
    rng = random.Random(5)
    for name, family in FAMILIES.items():
        for _ in range(40):
            steps = family(rng).steps
            ok_steps = [s for s in steps if not s.expect_error]
            if len(ok_steps) >= 2 and _assigned(ok_steps[0].code) & _loaded(ok_steps[1].code):
                sharing.add(name)
                break
    assert len(sharing) >= 6, sharing
