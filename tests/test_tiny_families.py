"""Tests for the tiny model's problem families (raysolve.tiny.families)."""

from __future__ import annotations

import ast
import json
import random
import re
from pathlib import Path

import pytest

from raysolve.tiny.families import (
    FAMILIES,
    ONELINER_FAMILIES,
    ONELINERS_SEED,
    TinyProblem,
    generate,
    generated_texts,
    make_oneliners,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ORIGINAL_FAMILIES = (
    "prime_count_range", "prime_sum_range", "divisor_count", "divisor_sum", "gcd_lcm", "mod_power", "mod_inverse",
    "digit_sum_power", "base_conversion", "base_divisor", "fibonacci_mod", "recurrence_mod", "binomial_mod",
    "lattice_points_circle", "count_with_property", "arithmetic_series_sum", "geometric_series_sum", "vieta_sum",
    "polynomial_roots_sum", "probability_fraction", "triangle_area", "last_digits_power", "totient",
    "diophantine_count", "sum_of_squares_count", "perfect_squares_between", "factorial_trailing_zeros",
    "collatz_steps", "palindromes_count",
)


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
    assert len(FAMILIES) == 35
    # the one-liners (issue 21) come after the original families, whose order is kept
    assert tuple(FAMILIES) == ORIGINAL_FAMILIES + ONELINER_FAMILIES
    assert len(ONELINER_FAMILIES) == 6


def test_generate_without_new_families_unchanged():
    """Restricted to the original families, ``generate`` draws exactly as before the one-liners
    (a hand-rolled copy of its schedule: seeded shuffle per round, one 64-bit seed per problem)."""
    names = list(ORIGINAL_FAMILIES)
    rng, order, expected = random.Random(11), [], []
    for _ in range(70):
        if not order:
            order = names[:]
            rng.shuffle(order)
        name = order.pop()
        expected.append(FAMILIES[name](random.Random(rng.getrandbits(64))))
    assert generate(11, 70, names) == expected


# Each issue-21 example form, per family (fullmatch against generated problems).
ISSUE_FORMS = {
    "product": [r"What is \d+\*\d+\?", r"Compute \d+ × \d+\.", r"Multiply \d+ by \d+\.", r"What is \d+ times \d+\?",
                r"Calculate \d+ \* \d+ \* \d+\.", r".*\d+ multiplied by \d+.*", r".*\d+ \\times \d+.*",
                r".*\d+ ?(\*|×|\\times) ?\d+ [+-] \d+ ?(\*|×|\\times) ?\d+.*"],
    "power": [r"What is \d+\^\d+\?", r"Compute \d+\*\*\d+\.", r"What is \d+ squared\?", r"Find \d+ cubed\.",
              r"What is \d+ to the power of \d+\?", r".*modulo 1000\.|.*mod 1000\?|.*divided by 1000\."],
    "remainder": [r"What is the remainder when \d+ is divided by \d+\?", r"Compute \d+ mod \d+\.", r"Find \d+ % \d+\.",
                  r"What is the remainder of \d+\^\d+ divided by \d+\?"],
    "percentage": [r"What is \d+% of \d+\?", r"Find \d+ percent of \d+\.", r"What is \d+\.\d+% of \d+\?",
                   r"A price of \d+ is increased by \d+%\. What is the new price\?", r"What percent of \d+ is \d+\?"],
    "linear_equation": [r"Solve \d*[a-z] [+-] \d+ = -?\d+\.", r"If \d*[a-z] - \d+ = -?\d+, what is [a-z]\?",
                        r"Find [a-z] such that \d*[a-z] [+-] \d+ = \d*[a-z] [+-] \d+\.",
                        r"What value of [a-z] satisfies [a-z]/\d+ [+-] \d+ = -?\d+\?"],
    "unit_fraction": [r"What is 1/\d+ of \d+\?", r"Compute 1/\d+ \+ 1/\d+ \+ 1/\d+\.", r"What is 1/\d+ of 1/\d+ of \d+\?",
                      r"How many [a-z]+ths are in \d+\?"],
}


@pytest.mark.parametrize("name", ONELINER_FAMILIES)
def test_oneliner_forms_and_single_cell(name):
    rng = random.Random(21 + len(name))
    problems = [FAMILIES[name](rng) for _ in range(1500)]
    texts = [p.problem for p in problems]
    for form in ISSUE_FORMS[name]:
        assert any(re.fullmatch(form, t) for t in texts), (name, form)
    # some are bare, as a first-time user types them: short, no preamble sentence
    bare = [t for t in texts if len(t) <= 40 and (not t[0].isupper() or t[-1] not in ".?")]
    assert len(bare) >= 0.05 * len(texts), (name, len(bare))
    for p in problems:
        assert len(p.steps) == 1 and not p.steps[0].expect_error
        assert "print(" in p.steps[0].code.splitlines()[-1]
        assert abs(p.answer) < 10**12


def test_generated_texts_match_generate():
    for families in (None, ONELINER_FAMILIES, ["power", "totient", "unit_fraction"]):
        problems = generate(4, 150, families)
        assert generated_texts(4, 150, families, ONELINER_FAMILIES) == {
            p.problem for p in problems if p.family in ONELINER_FAMILIES}
        assert generated_texts(4, 150, families) == {p.problem for p in problems}


def test_make_oneliners_balanced_and_avoids_training_texts():
    rows = make_oneliners(5, 36, train_seed=5, train_problems=60)
    assert len(rows) == 36 and len({r["problem"] for r in rows}) == 36
    assert {f: sum(r["family"] == f for r in rows) for f in ONELINER_FAMILIES} == dict.fromkeys(ONELINER_FAMILIES, 6)
    train = {p.problem for p in generate(5, 60, ONELINER_FAMILIES)}
    assert not train & {r["problem"] for r in rows}
    stream = {p.problem: p for p in generate(5, 400, ONELINER_FAMILIES)}
    for i, r in enumerate(rows):
        assert r["id"] == f"{r['family']}-{i}"
        assert stream[r["problem"]].family == r["family"] and r["answer"] == str(stream[r["problem"]].answer)
    with pytest.raises(ValueError):
        make_oneliners(5, 7, train_seed=None)


def test_oneliners_file_is_reproducible_held_out_set():
    rows = [json.loads(line) for line in (EXAMPLES / "tiny-oneliners.jsonl").read_text().splitlines()]
    heldout_keys = set(json.loads((EXAMPLES / "tiny-heldout.jsonl").read_text().splitlines()[0]))
    assert all(set(r) == heldout_keys for r in rows)
    assert len(rows) == 120
    assert all(sum(r["family"] == f for r in rows) == 20 for f in ONELINER_FAMILIES)
    assert all(re.fullmatch(r"-?\d+", r["answer"]) for r in rows)
    assert ONELINERS_SEED != 0
    assert rows == make_oneliners(ONELINERS_SEED, 120)  # which skips texts of training (seed 0) generations


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
