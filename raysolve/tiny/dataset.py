"""Training transcripts for the tiny model: generated problems, solved with real code runs.

Each ``TinyProblem``'s solution cells run in order, with shared state, in the
sandbox's own restricted interpreter (``raysolve.sandbox.restricted.Interpreter``,
the executor the sandbox worker process runs), and the transcript shows the
output exactly as the tool loop would show it at inference (``PromptFormat.
output_block``). The boxed answer is read from the last output line, not taken
from the reference; a problem whose executed answer disagrees with its reference
is dropped. Transcripts are lists of pieces: model text (trained on) and tool
output (context only, as at inference).
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from raysolve.core.prompting import PromptFormat
from raysolve.core.protocols import ExecResult
from raysolve.tiny.families import TinyProblem, generate

MAX_CODE_CALLS = 6
"""The code-call budget stated in training prompts (the solver's default)."""


@dataclass(frozen=True)
class Transcript:
    family: str
    problem: str
    answer: int
    pieces: tuple[tuple[str, bool], ...]
    """(text, written by the model) in order; tool output blocks are ``False``."""

    @property
    def assistant_text(self) -> str:
        return "".join(text for text, _ in self.pieces)


def code_call(thought: str, code: str, fmt: PromptFormat) -> str:
    """How the model writes one code call (generation stops after the end tag)."""
    return f"{thought}\n{fmt.code_begin}\n```python\n{code}\n```\n{fmt.code_end}"


def solve(problem: TinyProblem, interpreter: Any, fmt: PromptFormat) -> Transcript | None:
    """Run ``problem``'s cells and build its transcript; None if a cell misbehaves or the
    executed answer disagrees with the reference."""
    pieces: list[tuple[str, bool]] = []
    last_stdout = ""
    for number, step in enumerate(problem.steps, start=1):
        raw = interpreter.run(step.code, number)
        result = ExecResult("ok" if raw["status"] == "ok" else "error", raw["stdout"], raw["stderr"])
        if (result.status != "ok") != step.expect_error:
            return None  # a cell meant to fail ran, or one meant to run failed: not a clean example
        pieces.append((code_call(step.thought, step.code, fmt), True))
        pieces.append((fmt.output_block(result.text, MAX_CODE_CALLS - number, failed=result.status != "ok"), False))
        last_stdout = result.stdout if result.status == "ok" else ""
    lines = last_stdout.strip().splitlines()
    try:
        value = int(lines[-1].strip())
    except (IndexError, ValueError):
        return None
    if value != problem.answer:
        return None
    pieces.append((f"{problem.closing} \\boxed{{{value}}}.", True))
    return Transcript(problem.family, problem.problem, problem.answer, tuple(pieces))


_INTERPRETER_CLASS: Any = None


def _init_worker() -> None:
    global _INTERPRETER_CLASS
    from raysolve.sandbox.restricted import Interpreter

    _INTERPRETER_CLASS = Interpreter
    Interpreter()  # imports and hardens numpy/sympy once per process


def _solve_one(problem: TinyProblem) -> Transcript | None:
    interpreter = _INTERPRETER_CLASS(output_limit=4000, preload=False)  # fresh state per problem
    return solve(problem, interpreter, PromptFormat())


def build_transcripts(seed: int, n: int, workers: int = 2, families: Sequence[str] | None = None) -> list[Transcript]:
    """``n`` generated problems solved in ``workers`` processes (spawned: no forked Ray state)."""
    problems = generate(seed, n, families)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        solved = pool.map(_solve_one, problems, chunksize=64)
    return [t for t in solved if t is not None]


def tokenize(transcript: Transcript, codec: Any, fmt: PromptFormat) -> tuple[list[int], list[int]]:
    """Token ids and a 0/1 loss mask: prompt and tool output are context, the rest is learned.

    Pieces are encoded one at a time, as the tool loop does at inference (tool output is
    tokenised separately and appended), so token boundaries match what the model sees."""
    ids = fmt.prompt_ids(codec, transcript.problem, MAX_CODE_CALLS)
    mask = [0] * len(ids)
    for text, learned in transcript.pieces:
        piece = codec.encode(text)
        ids += piece
        mask += [int(learned)] * len(piece)
    ids += list(codec.eos_token_ids[:1])
    mask += [1]
    return ids, mask


def corpus_texts(transcripts: Iterable[Transcript], fmt: PromptFormat) -> Iterable[str]:
    """Text for tokenizer training: rendered user prompts and assistant turns."""
    for t in transcripts:
        yield fmt.user_template.format(problem=t.problem, max_code_calls=MAX_CODE_CALLS)
        yield t.assistant_text
