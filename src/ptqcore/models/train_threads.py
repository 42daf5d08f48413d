"""PyTorch's intra-op thread count during training, chosen step by step from measured step times.

Measured reason (issue 14, 2-core VM shared with other agents): while other processes kept about
one of the 2 cores busy, a training step with 2 OpenMP threads took 5 to 25 times as long as with 1
(efficientnet_b1 at batch 32: 4-13 s against 0.5 s): each of the thousands of small parallel
regions in a step waits at its barrier for a thread that the kernel has put behind another process.
On idle cores 2 threads are faster (up to 1.5x). Neither fixed count suits both, so
:class:`ThreadChooser` times steps with each candidate now and then and runs the others with the
fastest. In the sweep's log of such a run, mobilenet_v3_small's first two epochs took 268 and 229 s
and its last six 4-5 s each.

The thread count changes the order of floating-point sums in some kernels, so weights trained
with the count chosen per step can differ in their last bits between runs on a busy machine; a
fixed ``--ptq-threads N`` trains with exactly N threads throughout (:func:`training_thread_counts`).
"""

from __future__ import annotations

import math
from typing import Sequence

from ptqcore.cpu_isa import physical_cores


def training_thread_counts(threads: int) -> tuple[int, ...]:
    """The thread counts training chooses from: ``threads`` alone when given (> 0), else the
    physical cores and 1 (one count when the machine has one core)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    return (threads,) if threads else tuple(sorted({physical_cores(), 1}, reverse=True))


class ThreadChooser:
    """Which thread count the next training step runs with; every step's seconds are reported back.

    With one candidate every step uses it. With more, training starts with one untimed warm-up
    step per candidate (first use allocates and compiles kernels) and a probe round: one timed step
    per candidate, largest count first. The fastest (ties: the larger count) then runs every step
    until the next probe round, which comes after ``ceil(extra / overhead)`` steps, clamped to
    ``[min_every, max_every]``, where ``extra`` sums ``t_c / t_fastest - 1`` over the other
    candidates' probe times: the probes' extra time stays near ``overhead`` (5%) of the time between
    them. A step that takes more than ``slower`` times the chosen count's probe (the machine got
    busy) brings the next probe round forward to the next step. Steps must have one batch size so
    that their times compare.
    """

    def __init__(self, candidates: Sequence[int], overhead: float = 0.05, min_every: int = 32,
                 max_every: int = 200, slower: float = 2.0) -> None:
        if not candidates or min(candidates) < 1:
            raise ValueError(f"thread candidates must be counts >= 1, got {list(candidates)}")
        if not (overhead > 0 and 1 <= min_every <= max_every and slower > 1):
            raise ValueError("need overhead > 0, 1 <= min_every <= max_every and slower > 1")
        self.candidates: tuple[int, ...] = tuple(sorted(set(candidates), reverse=True))
        self.overhead, self.min_every, self.max_every, self.slower = overhead, min_every, max_every, slower
        self._step = 0
        several = len(self.candidates) > 1
        #: Steps planned ahead: (thread count, timed probe?); empty while exploiting the choice.
        self._plan = [(c, False) for c in self.candidates] + [(c, True) for c in self.candidates] if several else []
        self._next_round = math.inf
        self._probes: dict[int, float] = {}
        self._chosen = self.candidates[0]
        #: How many steps ran with each count (for the training log).
        self.steps_with: dict[int, int] = {count: 0 for count in self.candidates}

    @property
    def chosen(self) -> int:
        """The count the last probe round found fastest (the largest candidate before any)."""
        return self._chosen

    def next_threads(self) -> int:
        """The thread count for the step about to run."""
        if not self._plan and self._step >= self._next_round:
            self._plan = [(c, True) for c in self.candidates]
        return self._plan[0][0] if self._plan else self._chosen

    def record(self, seconds: float) -> None:
        """Report the step just run (with :meth:`next_threads`'s count) and move to the next one."""
        threads = self.next_threads()
        self.steps_with[threads] += 1
        self._step += 1
        if not self._plan:
            if seconds > self.slower * self._probes.get(threads, math.inf):
                self._next_round = self._step
            return
        _, timed = self._plan.pop(0)
        if timed:
            self._probes[threads] = seconds
        if timed and not self._plan:  # the round's last probe: choose, and plan the next round
            fastest = min(self.candidates, key=lambda count: (self._probes[count], -count))
            self._chosen = fastest
            best = max(self._probes[fastest], 1e-12)
            extra = sum(self._probes[count] / best - 1 for count in self.candidates if count != fastest)
            every = min(self.max_every, max(self.min_every, math.ceil(extra / self.overhead)))
            self._next_round = self._step + every

    def summary(self) -> str:
        """``"2 threads x 40 steps, 1 thread x 3 steps"``: what training ran with."""
        return ", ".join(
            f"{count} thread{'s' if count > 1 else ''} x {n} step{'s' if n != 1 else ''}"
            for count, n in self.steps_with.items() if n
        )
