"""ResourceMonitor: samples every source on a background thread and summarizes windows of the run.

One monitor runs around the whole measured stretch; named windows inside it are marked with
``phase(name)`` (the chosen design: one thread, one time line, so the idle baseline and the
window after it share samples and clock). Windows may follow each other, nest or repeat a name;
``summary(name)`` is the latest window of that name.

Contract:

* ``start()`` (or ``with``) asks every sampler ``available()``; those that are not are listed in
  ``unavailable`` with their reason and never read. It then takes one sample and starts a daemon
  thread that takes one every ``interval_s`` (fixed rate, timestamps from ``time.perf_counter``).
* ``phase(name)`` takes a sample as it opens and one as it closes, so every window's edges are
  measured rather than guessed; a window is ``[opening sample, closing sample]``.
* ``stop()`` (or leaving ``with``, also by an exception, which is never swallowed) stops and joins
  the thread, takes a last sample and closes every sampler. A phase left by an exception is
  closed and summarized too.
* A sampler that raises while sampling is dropped and closed, its error recorded in
  ``unavailable``; the other sources go on.
* Samples are kept in memory for the monitor's life (a few hundred bytes each); ``keep_samples``
  only decides whether summaries carry them.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ptqcore.measure.telemetry.samplers.base import Sampler, availability, close_quietly
from ptqcore.measure.telemetry.summary import PhaseSummary, Sample, SourceInfo, summarize

TOTAL = "total"


class Phase:
    """A window being measured; ``summary()`` once it is closed."""

    def __init__(self, monitor: ResourceMonitor, name: str, start: float) -> None:
        self.monitor, self.name, self.start = monitor, name, start
        self.end: Optional[float] = None

    def summary(self) -> PhaseSummary:
        if self.end is None:
            raise RuntimeError(f"phase {self.name!r} is still open")
        return self.monitor.summarize_window(self.name, self.start, self.end)


class ResourceMonitor:
    """Samples ``samplers`` every ``interval_s`` seconds from ``start()`` to ``stop()``; see the module docstring."""

    def __init__(
        self,
        samplers: Sequence[Sampler],
        interval_s: float = 0.2,
        keep_samples: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        stop_timeout_s: float = 5.0,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.samplers = list(samplers)
        self.interval_s = float(interval_s)
        self.keep_samples = keep_samples
        self.stop_timeout_s = stop_timeout_s
        self._clock = clock
        self.unavailable: Dict[str, str] = {}
        self._active: List[Sampler] = []
        self._sources: List[SourceInfo] = []
        self._samples: List[Sample] = []
        self._windows: List[Tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started: Optional[float] = None
        self._stopped: Optional[float] = None
        self._dropped_at: Dict[str, float] = {}

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._started is not None and self._stopped is None

    def start(self) -> ResourceMonitor:
        if self._started is not None:
            raise RuntimeError("a ResourceMonitor runs once; make a new one")
        names: Dict[str, int] = {}
        for sampler in self.samplers:
            reason = availability(sampler)
            count = names[sampler.name] = names.get(sampler.name, 0) + 1
            name = sampler.name if count == 1 else f"{sampler.name}#{count}"
            if reason is not None:
                self.unavailable[name] = reason
                continue
            sampler.name = name
            self._active.append(sampler)
        self._started = self._sweep()
        try:
            self._thread = threading.Thread(target=self._run, name="ptqcore-resource-monitor", daemon=True)
            self._thread.start()
        except BaseException:
            active, self._active = self._active, []
            self._close(active)
            raise
        return self

    def stop(self) -> None:
        """Stop and join the thread, take the last sample, close the samplers. Idempotent.

        A sampler stuck inside ``sample()`` cannot be interrupted: after ``stop_timeout_s`` the
        monitor says so in ``unavailable["monitor"]``, closes the samplers (which may unblock it)
        and returns; the daemon thread ends as soon as that call returns.
        """
        if not self.running:
            return
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.stop_timeout_s)
        if thread is not None and thread.is_alive():
            self.unavailable["monitor"] = (
                f"the sampling thread did not stop in {self.stop_timeout_s:g} s (a sampler hangs)"
            )
            self._stopped = self._clock()
            active, self._active = self._active, []  # the stuck thread holds the lock
            self._close(active)
            return
        try:
            self._stopped = self._sweep()
        finally:
            if self._stopped is None:
                self._stopped = self._clock()
            with self._lock:
                active, self._active = self._active, []
            self._close(active)

    def __enter__(self) -> ResourceMonitor:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def _close(self, samplers: List[Sampler]) -> None:
        for sampler in samplers:
            error = close_quietly(sampler)
            if error:
                self.unavailable.setdefault(f"{sampler.name}.close", error)

    # -- sampling -----------------------------------------------------------------------------
    def _run(self) -> None:
        deadline = self._clock() + self.interval_s
        while not self._stop.wait(max(0.0, deadline - self._clock())):
            try:
                self._sweep()
            except Exception as err:  # a bug here must end the thread visibly, not silently
                self.unavailable["monitor"] = f"sampling thread failed: {type(err).__name__}: {err}"
                return
            deadline += self.interval_s
            now = self._clock()
            if deadline < now:  # sampling took longer than an interval: skip the missed ticks
                deadline = now + self.interval_s

    def _sweep(self) -> float:
        """Read every active sampler once; return the sample's time."""
        with self._lock:
            t = self._clock()
            readings = {}
            for sampler in list(self._active):
                try:
                    values = sampler.sample()
                except Exception as err:
                    self._drop(sampler, f"failed during sampling: {type(err).__name__}: {err}", t)
                    continue
                readings[sampler.name] = {
                    key: float(value)
                    for key, value in values.items()
                    if value is not None and math.isfinite(float(value))
                }
                self._note_source(sampler)
            if self._stopped is None:  # a sweep that outlived stop() is not part of the run
                self._samples.append(Sample(t, readings))
            return t

    def _note_source(self, sampler: Sampler) -> None:
        if all(source.name != sampler.name for source in self._sources):
            self._sources.append(SourceInfo(sampler.name, sampler.power_domain, sampler.notes))
            for key, reason in sampler.missing.items():
                self.unavailable.setdefault(f"{sampler.name}.{key}", reason)

    def _drop(self, sampler: Sampler, reason: str, t: float) -> None:
        self._active.remove(sampler)
        self.unavailable[sampler.name] = reason
        self._dropped_at[sampler.name] = t
        close_quietly(sampler)

    # -- windows ------------------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Mark a window named ``name``: a sample as it opens and one as it closes (also on an exception)."""
        if not self.running:
            raise RuntimeError("phase() needs a running monitor (use it inside `with ResourceMonitor(...)`)")
        if name == TOTAL:
            raise ValueError(f"{TOTAL!r} names the whole run")
        window = Phase(self, name, self._sweep())
        try:
            yield window
        finally:
            window.end = self._sweep() if self.running else self._stopped
            self._windows.append((name, window.start, window.end))

    def idle_baseline(self, seconds: float, name: str = "idle") -> PhaseSummary:
        """Sleep ``seconds`` inside a phase ``name`` and return its summary (its ``power_w_mean`` is the idle power)."""
        with self.phase(name) as window:
            time.sleep(seconds)
        return window.summary()

    def phases(self) -> List[str]:
        """The window names in the order they closed (a repeated name once, at its latest place)."""
        names = [name for name, _, _ in self._windows]
        return [name for i, name in enumerate(names) if name not in names[i + 1 :]]

    def summary(self, name: str = TOTAL) -> PhaseSummary:
        """The latest closed window called ``name``, or the whole run (``"total"``) once stopped."""
        if name == TOTAL:
            if self._started is None or self._stopped is None:
                raise RuntimeError("the whole run is summarized after stop()")
            return self.summarize_window(TOTAL, self._started, self._stopped)
        for window_name, start, end in reversed(self._windows):
            if window_name == name:
                return self.summarize_window(name, start, end)
        raise KeyError(f"no closed phase {name!r}; closed phases: {self.phases()}")

    def summaries(self) -> Dict[str, PhaseSummary]:
        """Every phase name (latest window of each) and, once stopped, ``"total"``."""
        result = {name: self.summary(name) for name in self.phases()}
        if self._stopped is not None:
            result[TOTAL] = self.summary(TOTAL)
        return result

    def samples(self, start: Optional[float] = None, end: Optional[float] = None) -> List[Sample]:
        """The samples taken within ``[start, end]`` (perf_counter seconds; open ends by default)."""
        with self._lock:
            return [s for s in self._samples if (start is None or s.t >= start) and (end is None or s.t <= end)]

    def summarize_window(self, name: str, start: float, end: float) -> PhaseSummary:
        """The :class:`PhaseSummary` of ``[start, end]`` (perf_counter seconds).

        A source dropped after ``end`` is not listed as unavailable: it was there for this window.
        """
        with self._lock:
            samples, sources = list(self._samples), list(self._sources)
            unavailable = {
                name: reason for name, reason in self.unavailable.items() if self._dropped_at.get(name, end) <= end
            }
        return summarize(
            name, start, end, samples, sources, self.interval_s, unavailable, self._started, self.keep_samples
        )
