"""Latency statistics from raw samples, how many rounds a timed measurement needs, and overhead verdicts.

pytest-benchmark reports no percentiles; :class:`LatencyStats` computes them from its raw
samples. Percentiles use linear interpolation between closest ranks (NumPy's default).

Overhead checks (harness vs a bare loop, telemetry on vs off) time many short interleaved windows;
:func:`window_medians`, :func:`bracketed_ratios` and :func:`judge_overhead` turn them into one ratio
with a bootstrap confidence interval and a verdict that says "too noisy" rather than guess.
Pure Python (no NumPy): importing this module stays cheap.
"""

from __future__ import annotations

import math
import random
import statistics
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


# -- overhead checks: interleaved windows, paired ratios, bootstrap interval ------------------------
def window_medians(samples: Sequence[float], window: int) -> List[float]:
    """Median of each run of ``window`` consecutive ``samples`` (a trailing partial run is dropped)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    return [_median(samples[i:i + window]) for i in range(0, len(samples) - window + 1, window)]


def bracketed_ratios(measured: Sequence[float], reference: Sequence[float]) -> List[float]:
    """``measured[i]`` over the mean of the reference windows just before and after it.

    Windows interleave as reference, measured, reference, ..., measured, reference, so
    ``reference`` has one more entry than ``measured``; bracketing each measured window by its two
    neighbours cancels linear drift of the machine within the pair. All values must be > 0.
    """
    if len(reference) != len(measured) + 1:
        raise ValueError(f"need len(reference) == len(measured) + 1, got {len(reference)} and {len(measured)}")
    if not measured:
        raise ValueError("no windows")
    if min(measured) <= 0 or min(reference) <= 0:
        raise ValueError("window medians must be > 0")
    return [m / ((reference[i] + reference[i + 1]) / 2.0) for i, m in enumerate(measured)]


def bootstrap_median_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Tuple[float, float, float]:
    """(median, low, high): the median of ``values`` and its percentile-bootstrap interval.

    ``resamples`` resamples with replacement, drawn from ``random.Random(seed)``: the same input
    gives the same interval. ``low <= high``, both within ``[min(values), max(values)]``.
    """
    if not values:
        raise ValueError("bootstrap of no values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(_median([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = 100.0 * (1.0 - confidence) / 2.0
    return _median(values), percentile(medians, tail), percentile(medians, 100.0 - tail)


@dataclass(frozen=True)
class OverheadVerdict:
    """A ratio (measured / reference), its interval, the allowed overhead and what they say.

    ``outcome`` is ``"above"`` when the whole interval lies above ``1 + limit`` (a proven overhead:
    fail), ``"noisy"`` when it is not and the interval is wider than ``limit`` (the run cannot
    resolve an overhead of that size: neither pass nor fail), else ``"within"`` (pass).
    """

    ratio: float
    low: float
    high: float
    limit: float
    confidence: float
    windows: int

    @property
    def outcome(self) -> str:
        if self.low > 1.0 + self.limit:
            return "above"
        if self.high - self.low > self.limit:
            return "noisy"
        return "within"

    def describe(self) -> str:
        """``ratio X, 95% CI [a, b]`` with the numbers of this verdict."""
        return f"ratio {self.ratio:.4f}, {100 * self.confidence:g}% CI [{self.low:.4f}, {self.high:.4f}]"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["outcome"] = self.outcome
        return out


def judge_overhead(
    ratios: Sequence[float], limit: float, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> OverheadVerdict:
    """The :class:`OverheadVerdict` of paired window ``ratios`` against an overhead ``limit`` (0.03 = 3%)."""
    if limit <= 0:
        raise ValueError("limit must be > 0")
    ratio, low, high = bootstrap_median_ci(ratios, confidence, resamples, seed)
    return OverheadVerdict(ratio, low, high, limit, confidence, len(ratios))


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)
