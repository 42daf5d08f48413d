"""Latency statistics from raw samples, and how many rounds a timed measurement needs.

pytest-benchmark reports no percentiles; :class:`LatencyStats` computes them from its raw
samples. Percentiles use linear interpolation between closest ranks (NumPy's default).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, List, Sequence, Tuple


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of an ascending sequence, by linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True)
class LatencyStats:
    """Distribution of per-call latencies in milliseconds, and throughput in items per second."""

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    std: float
    throughput_ips: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float], batch_size: int) -> "LatencyStats":
        """Stats of ``samples`` (seconds per call, each call processing ``batch_size`` items)."""
        if not samples:
            raise ValueError("no latency samples")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        ms = sorted(s * 1000.0 for s in samples)
        mean = math.fsum(ms) / len(ms)
        var = math.fsum((v - mean) ** 2 for v in ms) / (len(ms) - 1) if len(ms) > 1 else 0.0
        return cls(
            n=len(ms),
            min=ms[0],
            p50=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            max=ms[-1],
            mean=mean,
            std=math.sqrt(var),
            throughput_ips=batch_size * 1000.0 / mean if mean > 0 else math.inf,
        )

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): above ~0.1 the window was unstable."""
        return self.std / self.mean if self.mean > 0 else 0.0

    def summary(self) -> dict:
        """The ``latency_ms`` record: p50, p90, p99, mean, std, n (and min, max, cv)."""
        out = asdict(self)
        out.pop("throughput_ips")
        out["cv"] = self.cv
        return out


def plan_rounds(seconds_per_call: float, min_rounds: int, min_seconds: float, max_rounds: int) -> int:
    """Rounds to time: at least ``min_rounds`` and enough to last ``min_seconds``, at most ``max_rounds``."""
    if min_rounds < 1 or max_rounds < min_rounds:
        raise ValueError("need 1 <= min_rounds <= max_rounds")
    if seconds_per_call <= 0:
        return max_rounds
    wanted = math.ceil(min_seconds / seconds_per_call)
    return max(min_rounds, min(max_rounds, wanted))


def time_calls(call: Callable[[], object], rounds: int) -> List[float]:
    """Seconds of each of ``rounds`` calls of ``call``, read with ``time.perf_counter`` around each."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def warm_up(call: Callable[[], object], min_calls: int, min_seconds: float) -> Tuple[float, float]:
    """Call until both ``min_calls`` and ``min_seconds`` are reached; the timings are discarded.

    Returns (first call's seconds, mean seconds of the calls after the first): the first-inference
    latency is reported on its own and the mean plans the timed rounds.
    """
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    calls = 0
    rest_started = time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < min_seconds:
        call()
        calls += 1
    return first, (time.perf_counter() - rest_started) / calls
