"""Timed measurements through pytest-benchmark, following the timing rules in DESIGN.md section 5.

Warm-up is run and discarded first (its first call reported on its own), then the number of
timed rounds is planned so that it reaches both a minimum count and a minimum duration, and
pytest-benchmark times each round. Percentiles come from pytest-benchmark's raw samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from .stats import LatencyStats, plan_rounds, warm_up


@dataclass(frozen=True)
class LatencyPlan:
    min_rounds: int = 20
    min_seconds: float = 1.0
    max_rounds: int = 100_000
    warmup_calls: int = 10
    warmup_seconds: float = 0.5


def raw_samples(benchmark) -> Optional[List[float]]:
    """The per-round seconds pytest-benchmark recorded, or None when benchmarking is disabled."""
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    data = getattr(inner, "data", None)
    return list(data) if data else None


def benchmark_latency(benchmark, infer: Callable[[np.ndarray], object], batch: np.ndarray, plan: LatencyPlan) -> Tuple[Optional[LatencyStats], float, int]:
    """Warm up, then time ``infer(batch)`` with ``benchmark.pedantic``.

    Returns (stats, first-call milliseconds, rounds). ``stats`` is None when pytest-benchmark was
    told not to time (``--benchmark-disable``): the call still ran, but nothing was measured.
    """
    first_s, per_call_s = warm_up(lambda: infer(batch), plan.warmup_calls, plan.warmup_seconds)
    rounds = plan_rounds(per_call_s, plan.min_rounds, plan.min_seconds, plan.max_rounds)
    benchmark.pedantic(infer, args=(batch,), rounds=rounds, iterations=1, warmup_rounds=0)
    samples = raw_samples(benchmark)
    stats = LatencyStats.from_seconds(samples, len(batch)) if samples else None
    return stats, first_s * 1000.0, rounds
