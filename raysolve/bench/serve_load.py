"""Load on the Serve endpoint (``jobs/bench_serve.py``): clients sending ``POST /v1/solve``
back to back, requests/s and p50/p95 latency per level. The deployment itself is started by
the caller (``raysolve.bench`` never imports ``raysolve.serve``). Needs ``httpx``."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from raysolve.core.timing import percentile

CSV_FIELDS = ["clients", "requests", "requests_per_s", "p50_s", "p95_s", "wall_s", "correct"]
"""The columns of the CSV of a load test, one row per level."""


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def level_summary(latencies_s: list[float], clients: int, requests: int, codes: dict[int, int], correct: int,
                  wall: float) -> dict[str, Any]:
    """One level's row: requests/s over ``wall`` and the p50/p95 request latency in seconds."""
    return {
        "clients": clients,
        "requests": requests,
        "status_codes": codes,
        "correct": correct,
        "wall_s": round(wall, 2),
        "requests_per_s": round(requests / wall, 3),
        "p50_s": round(percentile(latencies_s, 0.5), 3),
        "p95_s": round(percentile(latencies_s, 0.95), 3),
    }


async def load_level(url: str, problems: list[dict[str, Any]], clients: int, requests: int,
                     transport: Any = None) -> dict[str, Any]:
    """``requests`` requests to ``url`` from ``clients`` concurrent clients, each sending its next
    problem (``problems`` in turn) as soon as its previous answer is back. ``transport``: an
    ``httpx`` transport in place of the network (tests)."""
    import httpx

    latencies: list[float] = []
    codes: dict[int, int] = {}
    correct = 0
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal correct
        for i in counter:
            problem = problems[i % len(problems)]
            t0 = time.perf_counter()
            response = await http.post(url, json={"problem": problem["problem"], "keep_samples": False})
            latencies.append(time.perf_counter() - t0)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code == 200 and response.json()["answer"] == str(problem.get("answer")):
                correct += 1

    async with httpx.AsyncClient(timeout=600, transport=transport) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    return level_summary(latencies, clients, requests, codes, correct, wall)
