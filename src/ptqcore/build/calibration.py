"""One calibration pass, every method: per-tensor statistics, and min/max, entropy and percentile ranges from them.

:func:`collect_statistics` runs the calibration images once through the prepared model (every
float tensor an ONNX Runtime calibrator would look at made a graph output) and keeps, per tensor,
its minimum, maximum and one histogram of absolute values: TensorRT's layout, :data:`NUM_BINS`
bins over ``[0, hist_range]``. When a batch exceeds the range, the range doubles as often as
needed and adjacent bins merge, so merging is exact and the layout stays :data:`NUM_BINS` bins.

From those statistics, with no new pass:

* ``minmax``: the observed minimum and maximum (what ONNX Runtime's MinMax calibrator gives);
* ``entropy``: TensorRT's ``IInt8EntropyCalibrator2`` algorithm as NVIDIA publishes it in
  pytorch-quantization (``pytorch_quantization/calib/histogram.py``, ``_compute_amax_entropy``,
  TensorRT 8.x tools/pytorch-quantization): the zero bin takes the count of bin 1; for every
  candidate end bin ``i`` from 128 to :data:`NUM_BINS`, the reference distribution is bins
  ``[0, i)`` with the outliers added to bin ``i - 1``, the candidate distribution merges those
  bins into 128 levels (``np.linspace(0, i, 129)``) and spreads each level evenly over its
  non-empty bins; the threshold is the upper edge of the candidate with the smallest KL
  divergence (the last one on ties), among candidates that clip at most :data:`MAX_CLIPPED_SHARE`
  of the values (ptqcore's guard, see there). Every candidate is evaluated at once from cumulative
  sums (:func:`entropy_threshold`), no Python loop per candidate;
* ``percentile``: the upper edge of the bin where the cumulative share of ``|x|`` reaches the
  percentile (pytorch-quantization's ``_compute_amax_percentile``).

A threshold ``t`` gives the range ``(max(min, -t), min(max, t))``: asymmetric layouts keep the
observed side, symmetric ones (TensorRT) use ``max(|low|, |high|)``.

**Network outputs keep their observed range, whatever the method** (``observed`` in
:func:`ranges_from_statistics`; the pipeline passes the model's graph outputs and the tensors the
user marks with ``--ptq-observed-range``). A classifier's winning logit is one value in
``classes``: under 1% of a 1,000-class output's values, so any threshold that clips a small share
(entropy, percentile) clips exactly the values the argmax reads; measured on an
ImageNet-pretrained classifier, entropy's threshold for the logits was 4.58 where they reached
10.95, and top-1 fell by 60 pp. TensorRT's implicit INT8 does the equivalent: it keeps network
outputs in FP32 unless asked otherwise. :func:`clipping_summary` says, per method, how many
tensors were clipped and which the most.

ONNX Runtime's own entropy calibrator differs on purpose: it histograms signed values over
``[-m, m]`` with a growing bin count, truncates the expanded distribution to integers and smooths
both distributions before the KL divergence (onnxruntime/python/tools/quantization/calibrate.py,
``HistogramCollector.get_entropy_threshold``), so its thresholds are close to but not equal to
TensorRT's; the tests measure how close.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from ptqcore.case import CALIBRATION_METHODS
from ptqcore.errors import BuildError

#: Histogram bins over ``[0, max |x|]`` (TensorRT's calibrator layout).
NUM_BINS = 2048
#: Quantized levels of a signed INT8 tensor (one side of 256): the entropy candidates' resolution.
NUM_QUANTIZED_BINS = 128
#: ptqcore's guard on TensorRT's entropy search: a candidate that clips more than this share of the
#: values is not considered. Without it, a tensor whose values sit away from zero in few distinct
#: bins (an SE block's pooled scales, a hard-swish input in [0.08, 1]) scores a candidate that folds
#: nearly everything into its last bin as perfect (the KL divergence of two single spikes is 0), and
#: MobileNetV3 / EfficientNet lost 50-80 pp of top-1; real entropy thresholds clip far less than 1%.
MAX_CLIPPED_SHARE = 0.01
#: Bumped whenever a method's ranges change for the same statistics (part of the ranges' cache key).
#: 3: graph outputs (and marked tensors) keep their observed range.
RANGES_VERSION = 3
#: Tensors a record's ``ranges`` summary lists as the most clipped.
MOST_CLIPPED = 5


@dataclass
class TensorStatistics:
    """Minimum, maximum and a :data:`NUM_BINS`-bin histogram of ``|x|`` over ``[0, hist_range]``."""

    minimum: float
    maximum: float
    hist: np.ndarray
    hist_range: float

    @classmethod
    def empty(cls, bins: int = NUM_BINS) -> "TensorStatistics":
        return cls(float("inf"), float("-inf"), np.zeros(bins, dtype=np.int64), 0.0)

    def add(self, values: np.ndarray, name: str) -> None:
        """Merge one batch of values of tensor ``name``; NaN or infinity is a :class:`BuildError`."""
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        if flat.size == 0:
            return
        low, high = float(flat.min()), float(flat.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise BuildError(f"calibration tensor {name!r} holds NaN or infinite values",
                             "check the model and the calibration images (normalization, a broken layer)")
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        self._grow(float(max(-low, high)))
        bins = len(self.hist)
        if self.hist_range > 0:
            scaled = np.abs(flat)
            scaled *= np.float32(bins / self.hist_range)
            counts = np.bincount(scaled.astype(np.intp), minlength=bins + 1)
            counts[bins - 1] += counts[bins:].sum()  # |x| == hist_range (and float rounding just above it)
            self.hist += counts[:bins]
        else:
            self.hist[0] += flat.size

    def _grow(self, peak: float) -> None:
        """Double the range until it holds ``peak``, merging pairs of bins each time (exact)."""
        if peak <= self.hist_range:
            return
        if self.hist_range == 0.0:
            self.hist_range = peak  # anything counted so far was 0 and stays in bin 0
            return
        factor = 1
        while self.hist_range * factor < peak:
            factor *= 2
        bins = len(self.hist)
        merged = np.zeros_like(self.hist)
        if factor >= bins:
            merged[0] = self.hist.sum()
        else:
            merged[: bins // factor] = self.hist.reshape(bins // factor, factor).sum(axis=1)
        self.hist, self.hist_range = merged, self.hist_range * factor

    @property
    def absmax(self) -> float:
        return max(-self.minimum, self.maximum, 0.0)

    def threshold(self, method: str, percentile: float = 99.999) -> float:
        """The clipping threshold ``t`` of ``method`` (``minmax``: ``max |x|``)."""
        if method == "minmax":
            return self.absmax
        if method == "entropy":
            return min(entropy_threshold(self.hist, self.hist_range), self.absmax) or self.absmax
        if method == "percentile":
            return min(percentile_threshold(self.hist, self.hist_range, percentile), self.absmax)
        raise ValueError(f"method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")

    def range(self, method: str, percentile: float = 99.999) -> Tuple[float, float]:
        """``(low, high)`` of ``method``: the observed range clipped to ``[-t, t]``."""
        if method == "minmax":
            return self.minimum, self.maximum
        t = self.threshold(method, percentile)
        return max(self.minimum, -t), min(self.maximum, t)


def entropy_threshold(hist: np.ndarray, hist_range: float, quantized_bins: int = NUM_QUANTIZED_BINS,
                      start_bin: int = NUM_QUANTIZED_BINS) -> float:
    """TensorRT's entropy threshold of a histogram of ``|x|`` over ``[0, hist_range]`` (module docstring).

    Every candidate ``i`` in ``[start_bin, len(hist)]`` is scored at once: with ``b`` the counts
    (bin 0 set to bin 1), ``T`` their total, ``C`` and ``Z`` the cumulative counts and non-empty
    bins, level ``k`` of candidate ``i`` holds ``S_k = C[e_k] - C[s_k]`` over ``N_k`` non-empty
    bins; the candidate distribution is ``S_k / (N_k C[i])`` on each non-empty bin, so
    ``KL = (sum_{j<i-1} b_j log b_j - sum_k S_k log(S_k / N_k) + C[i] log C[i]) / T - C[i-1]/T log T``
    plus the last bin's own term, infinite when outliers land on an empty last bin.
    """
    if hist_range <= 0 or len(hist) < max(2, start_bin):
        return float(hist_range)
    candidates, kl = entropy_divergences(hist, quantized_bins, start_bin)
    counts = np.asarray(hist, dtype=np.float64)
    clipped = 1.0 - np.cumsum(counts)[candidates - 1] / max(counts.sum(), 1.0)
    kl = np.where(clipped > MAX_CLIPPED_SHARE, np.inf, kl)
    if not np.isfinite(kl).any():
        return float(hist_range)
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))
    return float(candidates[best] * hist_range / len(hist))


def entropy_divergences(hist: np.ndarray, quantized_bins: int = NUM_QUANTIZED_BINS,
                        start_bin: int = NUM_QUANTIZED_BINS) -> Tuple[np.ndarray, np.ndarray]:
    """``(candidates, kl)``: every candidate end bin and its KL divergence (``inf`` where undefined),
    all at once (see :func:`entropy_threshold`)."""
    counts = np.asarray(hist, dtype=np.float64).copy()
    bins = len(counts)
    counts[0] = counts[1]
    total = counts.sum()
    candidates = np.arange(start_bin, bins + 1)
    if total <= 0:
        return candidates, np.full(len(candidates), np.inf)
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    nonzero = np.concatenate([[0], np.cumsum(counts > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        b_log_b = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0)), 0.0)
    cumulative_b_log_b = np.concatenate([[0.0], np.cumsum(b_log_b)])

    starts = _level_starts(bins, quantized_bins, start_bin)
    level_sum = np.diff(cumulative[starts], axis=1)
    level_nonzero = np.diff(nonzero[starts], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # S log(S / N), 0 where the level is empty (then N = 0 too)
        log_count = np.log(np.maximum(np.arange(bins + 1, dtype=np.float64), 1.0))  # log 0 stands for 0 here
        level_terms = level_sum * (np.log(np.where(level_sum > 0, level_sum, 1.0)) - log_count[level_nonzero])
        inside = cumulative[candidates]
        last = counts[candidates - 1]
        outliers = total - inside
        kl = (cumulative_b_log_b[candidates - 1] - level_terms.sum(axis=1) + inside * np.log(inside)) / total
        kl -= cumulative[candidates - 1] / total * np.log(total)
        # the last bin: reference (last + outliers) / T against the level-127 density
        q_last = level_sum[:, -1] / (np.maximum(level_nonzero[:, -1], 1) * inside)
        p_last = (last + outliers) / total
        has_last = last > 0
        kl += np.where(has_last, last / total * np.log(np.where(has_last, q_last, 1.0)), 0.0)
        kl += np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0) / np.where(has_last, q_last, 1.0)),
                       0.0)
        kl = np.where(~has_last & (outliers > 0), np.inf, kl)
    return candidates, kl


@functools.lru_cache(maxsize=8)
def _level_starts(bins: int, quantized_bins: int, start_bin: int) -> np.ndarray:
    """First bin of each level, per candidate: ``ceil(np.linspace(0, i, quantized_bins + 1))``, the
    bins pytorch-quantization's ``np.digitize`` puts in each level (the same for every histogram)."""
    candidates = np.arange(start_bin, bins + 1)
    starts = np.ceil(np.linspace(0.0, candidates.astype(np.float64), quantized_bins + 1, axis=1)).astype(np.int64)
    starts[:, -1] = candidates
    starts.setflags(write=False)
    return starts


def percentile_threshold(hist: np.ndarray, hist_range: float, percentile: float) -> float:
    """The upper edge of the bin where the cumulative share of ``|x|`` reaches ``percentile``."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    counts = np.asarray(hist, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or hist_range <= 0:
        return float(hist_range)
    index = int(np.searchsorted(np.cumsum(counts) / total, percentile / 100.0))
    return float(min(index + 1, len(counts)) * hist_range / len(counts))


def tensors_to_calibrate(model) -> Dict[str, object]:
    """Every float input and output of every node that is not an initializer, with its value info:
    the tensors ONNX Runtime's calibrators select (``CalibraterBase.select_tensors_to_calibrate`` in
    onnxruntime/python/tools/quantization/calibrate.py, 1.19 to 1.32, with no op-type filter)."""
    import onnx

    infos = {vi.name: vi for vi in model.graph.value_info}
    infos.update({vi.name: vi for vi in model.graph.output})
    infos.update({vi.name: vi for vi in model.graph.input})
    initializers = {init.name for init in model.graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    chosen: Dict[str, object] = {}
    for node in model.graph.node:
        for name in list(node.input) + list(node.output):
            info = infos.get(name)
            if (info is not None and name not in initializers and info.type.HasField("tensor_type")
                    and info.type.tensor_type.elem_type in floats):
                chosen[name] = info
    return chosen


def collect_statistics(prepared_path: Path, images: np.ndarray, batch_size: int = 16,
                       threads: int = 0) -> Dict[str, TensorStatistics]:
    """One pass of ``images`` through the model at ``prepared_path``: statistics of every tensor to calibrate."""
    import onnx
    import onnxruntime as ort

    if len(images) == 0:
        raise BuildError("the calibration set is empty", "use --ptq-calibration-size >= 1")
    model = onnx.load(str(prepared_path))
    chosen = tensors_to_calibrate(model)
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend([info for name, info in chosen.items() if name not in outputs])
    initializers = {init.name for init in model.graph.initializer}
    input_name = next(i.name for i in model.graph.input if i.name not in initializers)
    names = list(chosen)
    statistics = {name: TensorStatistics.empty() for name in names}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="ptqcore-stats-") as scratch:
        augmented = Path(scratch) / "augmented.onnx"
        onnx.save(model, str(augmented))
        session = ort.InferenceSession(str(augmented), options, providers=["CPUExecutionProvider"])
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
            for name, values in zip(names, session.run(names, {input_name: batch})):
                statistics[name].add(values, name)
        del session
    return statistics


def save_statistics(statistics: Dict[str, TensorStatistics], path: Path) -> Path:
    """Write the statistics as one ``.npz`` (names sorted, so the same statistics give the same bytes)."""
    names = sorted(statistics)
    with open(path, "wb") as handle:
        np.savez(
            handle,
            names=np.array(names, dtype=str),
            minimum=np.array([statistics[n].minimum for n in names], dtype=np.float64),
            maximum=np.array([statistics[n].maximum for n in names], dtype=np.float64),
            hist_range=np.array([statistics[n].hist_range for n in names], dtype=np.float64),
            hist=np.stack([statistics[n].hist for n in names]) if names else np.zeros((0, NUM_BINS), np.int64),
        )
    return Path(path)


def load_statistics(path: Path) -> Dict[str, TensorStatistics]:
    """The statistics :func:`save_statistics` wrote."""
    with np.load(str(path), allow_pickle=False) as data:
        return {
            str(name): TensorStatistics(float(low), float(high), hist.astype(np.int64), float(span))
            for name, low, high, span, hist in zip(data["names"], data["minimum"], data["maximum"],
                                                    data["hist_range"], data["hist"])
        }


def ranges_from_statistics(statistics: Dict[str, TensorStatistics], method: str,
                           percentile: float = 99.999, observed: Iterable[str] = ()) -> Dict[str, Tuple[float, float]]:
    """``{tensor: (low, high)}`` for ``method``, from one pass's statistics; every tensor named in
    ``observed`` keeps its observed range (min/max) whatever the method (module docstring). A name in
    ``observed`` that is not a calibrated tensor is a :class:`BuildError` naming it."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    kept = set(observed)
    unknown = sorted(kept - set(statistics))
    if unknown:
        raise BuildError(f"tensor {unknown[0]!r} (--ptq-observed-range) is not a calibrated tensor of the model",
                         f"name a float tensor of the model, e.g. one of {', '.join(sorted(statistics)[:3])}")
    return {name: stats.range("minmax" if name in kept else method, percentile)
            for name, stats in sorted(statistics.items())}


def clipped_share(stats: TensorStatistics, threshold: float) -> float:
    """The share of the tensor's calibration values with ``|x|`` above ``threshold``, from its
    histogram (to one bin: a bin is counted as clipped when it lies wholly above the threshold)."""
    total = float(stats.hist.sum())
    if total <= 0 or stats.hist_range <= 0:
        return 0.0
    first = int(np.ceil(threshold * len(stats.hist) / stats.hist_range - 1e-9))
    return float(stats.hist[max(first, 0):].sum()) / total


def clipping_summary(statistics: Dict[str, TensorStatistics], ranges: Dict[str, Tuple[float, float]],
                     observed: Iterable[str] = (), top: int = MOST_CLIPPED) -> dict:
    """What a set of ranges clipped: ``tensors`` (calibrated), ``clipped`` (how many have a range
    narrower than what was observed), ``observed_range`` (the tensors kept at their observed range:
    graph outputs and marked tensors) and ``most_clipped``: the ``top`` tensors with the smallest
    ``kept`` = threshold / observed ``max |x|``, each with ``threshold``, ``observed_max`` and
    ``clipped_values`` (the share of its values above the threshold)."""
    rows = []
    for name, (low, high) in sorted(ranges.items()):
        stats = statistics.get(name)
        if stats is None or stats.absmax <= 0:
            continue
        threshold = max(-low, high, 0.0)
        if threshold >= stats.absmax * (1 - 1e-6):
            continue
        rows.append({"tensor": name, "threshold": threshold, "observed_max": stats.absmax,
                     "kept": threshold / stats.absmax, "clipped_values": clipped_share(stats, threshold)})
    rows.sort(key=lambda row: (row["kept"], row["tensor"]))
    return {"tensors": len(ranges), "clipped": len(rows), "observed_range": sorted(set(observed)),
            "most_clipped": rows[:top]}


def describe_clipping(summary: dict, count: int = 3) -> str:
    """``12 of 40 tensors clipped, most: conv1 (16% of max |x|), ...``: a summary for messages."""
    if not summary.get("clipped"):
        return f"no tensor clipped ({summary.get('tensors', 0)} calibrated)"
    most = ", ".join(f"{row['tensor']} ({row['kept']:.0%} of max |x|)" for row in summary["most_clipped"][:count])
    return f"{summary['clipped']} of {summary['tensors']} tensors clipped, most: {most}"


def tensors_data(ranges: Dict[str, Tuple[float, float]], method: str):
    """ONNX Runtime's ``TensorsData`` for ``ranges`` (what ``quantize_static`` quantizes from)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    kind = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    return TensorsData(kind, {name: TensorData(lowest=np.array(low, dtype=np.float32),
                                               highest=np.array(high, dtype=np.float32))
                              for name, (low, high) in ranges.items()})


def describe(statistics: Dict[str, TensorStatistics], names: Optional[Iterable[str]] = None) -> str:
    """A one-line summary for progress output: tensor count and total values seen."""
    chosen = list(names or statistics)
    seen = sum(int(statistics[n].hist.sum()) for n in chosen)
    return f"{len(chosen)} tensors, {seen:,} values"
