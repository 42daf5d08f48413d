"""``int8-mixed``: the fewest layers kept in float that bring an INT8 case's drop within its limit.

**When.** Only where the plain INT8 case of the same model, backend, calibration method and size
fails its own accuracy-drop limit. That is known only after the INT8 accuracy pass, so an
``int8-mixed`` case whose INT8 passes is skipped at run time with the reason
(:func:`skip_reason`, called by the plugin before each of its tests), not at collection.

**How** (:func:`search`). The layers are tried in the order of :mod:`ptqcore.study.sensitivity` (most
added error first). Keeping the first ``k`` in float is evaluated for ``k = 1, 2, 4, 8, ...`` (and
the whole ranking last) until one is within the limit, then the gap between the last ``k`` that
failed and the first that passed is bisected: about ``2 log2(k)`` evaluations instead of ``k``,
and the fewest layers *if the drop falls monotonically with k*, which is likely but not
guaranteed (each evaluation is recorded under ``mixed_search``, so a non-monotonic case shows).
Each evaluation is a real build (ONNX Runtime's ``nodes_to_exclude`` plus
:func:`ptqcore.build.float_layers.keep_in_float`) and a top-1 pass over the **evaluation split** against
the case's reference (never the calibration images): for ONNX Runtime the INT8 model itself with
its kernels (the artifact is the Q/DQ file); for a backend whose artifact is not (TensorRT), the
fake-quant reference of its Q/DQ model, because an engine build per candidate takes minutes on a
Jetson; the engine of the chosen set is then measured like any case, and its kernel part is
checked by ``test_int8_kernel_matches_reference``.

Where even the whole ranking in float misses the limit, the set with the lowest drop is kept and
the record says ``cannot reach the limit: best drop X pp with N float layers``; the case then
fails its threshold test with that line.

The result is cached in the store (keyed by the prepared model, the ranges, the backend's recipe
and versions, the evaluation data and the limit), so a later run reuses it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from ptqcore.build.float_layers import mac_share
from ptqcore.case import Case, Precision
from ptqcore.measure.accuracy import drop_pp, predict
from ptqcore.study.sensitivity import plain_int8, record_sensitivity, sensitivity

if TYPE_CHECKING:  # pragma: no cover
    from ptqcore.suite import Suite

#: Bumped when the search changes, so cached results are searched again.
SEARCH_VERSION = 1


def drop_limit(suite: "Suite", case: Case) -> Optional[float]:
    """The accuracy-drop limit of ``case`` from the thresholds (None: no limit)."""
    return suite.thresholds.limits_for(case.model, case.precision.value, case.backend).max_accuracy_drop_pp


def skip_reason(suite: "Suite", case: Case) -> Optional[str]:
    """Why the ``int8-mixed`` case has nothing to repair (its plain INT8 case passes its limit), or None."""
    plain = plain_int8(case)
    limit = drop_limit(suite, plain)
    if limit is None:
        return f"{plain.id} has no accuracy-drop limit, so there is nothing to repair"
    drop = suite.quality(plain)["accuracy_drop_pp"]
    if drop <= limit:
        return f"plain INT8 passes ({plain.id}: drop {drop:.2f} pp <= {limit} pp): no layer needs to stay in float"
    return None


def greedy_counts(evaluate: Callable[[int], float], total: int, limit: float) -> Dict[int, float]:
    """Drops of the ``k`` the search evaluates (``evaluate(k)``: the drop with the first ``k`` ranked
    layers in float, for ``1 <= k <= total``): doubling ``k`` until the drop is within ``limit``, then
    bisecting between the last failing and the first passing ``k``. Pure logic, tested alone."""
    drops: Dict[int, float] = {}

    def at(k: int) -> float:
        if k not in drops:
            drops[k] = evaluate(k)
        return drops[k]

    k, failed = 1, 0
    while k < total and at(k) > limit:
        failed, k = k, 2 * k
    k = min(k, total)
    if total < 1 or at(k) > limit:
        return drops
    low, high = failed, k  # low fails (or is 0), high passes
    while high - low > 1:
        middle = (low + high) // 2
        if at(middle) <= limit:
            high = middle
        else:
            low = middle
    return drops


def choose(drops: Dict[int, float], limit: float) -> int:
    """The fewest layers whose drop is within ``limit``; else the lowest drop (fewest layers on ties)."""
    passing = [k for k, drop in drops.items() if drop <= limit]
    if passing:
        return min(passing)
    return min(drops, key=lambda k: (drops[k], k))


def _evaluator(suite: "Suite", case: Case, ranked: List[str], scratch: Path) -> Callable[[int], float]:
    from ptqcore.backends import Int8Inputs
    from ptqcore.backends.onnxruntime import OrtRunner

    backend = suite.backend(case.backend)
    plain = suite.int8_inputs(plain_int8(case))
    reference = suite.predictions(suite.reference_case(case))
    data = suite.dataset(case.model)
    prepared = plain.prepared_onnx  # quantized through a private link (quantize.qdq_onnx_from_onnx)

    def evaluate(k: int) -> float:
        int8 = Int8Inputs(prepared, plain.ranges, plain.calibration_images, tuple(ranked[:k]))
        path = scratch / f"candidate-{k}{backend.artifact_suffix if backend.int8_artifact_is_reference else '.onnx'}"
        if backend.int8_artifact_is_reference:
            runner = backend.runner(case, backend.build(case, prepared, path, int8))
        else:
            runner = OrtRunner(backend.int8_reference_onnx(case, int8, path), suite.threads, reference=True)
        with runner:
            predictions = predict(runner.infer, data.evaluation_batches(suite.options.eval_batch_size))
        drop = drop_pp(reference.top1_accuracy, predictions.top1_accuracy)
        suite.report(f"{case.id}: {k} layer(s) in float: drop {drop:.2f} pp")
        return drop

    return evaluate


def search(suite: "Suite", case: Case) -> dict:
    """The float layers of an ``int8-mixed`` case and how they were found (module docstring), once per
    session and cached in the store."""
    if case.precision is not Precision.INT8_MIXED:
        raise ValueError(f"{case.id} is not an int8-mixed case")
    return suite.once(("mixed-search", case.id), lambda: _cached_search(suite, case))


def _cached_search(suite: "Suite", case: Case) -> dict:
    from ptqcore.store import file_sha256

    plain = plain_int8(case)
    limit = drop_limit(suite, case)
    if limit is None:
        raise ValueError(f"{case.id} has no accuracy-drop limit to search for")
    int8 = suite.int8_inputs(plain)
    backend = suite.backend(case.backend)
    layers = record_sensitivity(suite, plain)
    ranked = [item["node"] for item in layers]
    inputs = {"prepared_sha256": file_sha256(int8.prepared_onnx), "ranges_sha256": file_sha256(int8.ranges),
              "backend": backend.name, "recipe": backend.int8_record_fields(case), "versions": backend.versions(),
              "data": suite.dataset(case.model).fingerprint, "reference": suite.reference_case(case).id,
              "ranked": ranked, "limit_pp": limit, "version": SEARCH_VERSION}

    def build(path: Path) -> None:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ptqcore-mixed-") as scratch:
            drops = greedy_counts(_evaluator(suite, case, ranked, Path(scratch)), len(ranked), limit)
        k = choose(drops, limit) if drops else 0
        path.write_text(json.dumps({
            "float_layers": ranked[:k], "drop_pp": drops.get(k), "reached": bool(drops) and drops[k] <= limit,
            "limit_pp": limit, "ranked_layers": len(ranked), "search_s": time.perf_counter() - started,
            "evaluations": [{"float_layers": n, "drop_pp": drops[n]} for n in sorted(drops)],
        }, sort_keys=True))

    _, found = suite.store.load_or_build("mixed", inputs, "mixed.json", build, _read_search,
                                         f"float layers of {case.id}")
    return found


#: What a search result holds (:func:`_cached_search` writes them all).
_SEARCH_KEYS = ("float_layers", "drop_pp", "reached", "limit_pp", "ranked_layers", "search_s", "evaluations")


def _read_search(path: Path) -> dict:
    """A cached search result; raises KeyError for one that lacks a field (then it is built again)."""
    found = json.loads(path.read_text())
    missing = [key for key in _SEARCH_KEYS if key not in found]
    if missing:
        raise KeyError(f"{path.name} lacks {', '.join(missing)}")
    return found


def float_nodes(suite: "Suite", case: Case) -> tuple:
    """The nodes the build of ``case`` keeps in float: the search's for ``int8-mixed``, else none."""
    return tuple(search(suite, case)["float_layers"]) if case.precision is Precision.INT8_MIXED else ()


def mixed_figures(suite: "Suite", case: Case) -> dict:
    """What an ``int8-mixed`` record adds: ``float_layers``, their ``float_macs_share``, the search
    (``mixed_search``) and ``mixed_note`` (``cannot reach the limit: ...`` when it could not)."""
    found = search(suite, case)
    names = found["float_layers"]
    total = sensitivity(suite, case)
    return {"float_layers": list(names), "float_macs_share": mac_share(total["macs_by_node"], names),
            "mixed_search": {k: found[k] for k in ("evaluations", "limit_pp", "ranked_layers", "search_s", "reached")},
            "mixed_note": mixed_note(found)}


def mixed_note(found: dict) -> str:
    """The record's one line on a search result: how many layers, or that the limit is out of reach."""
    count = len(found["float_layers"])
    if found["reached"]:
        return f"{count} of {found['ranked_layers']} ranked layers in float"
    drop = found["drop_pp"]
    best = "no layer to keep in float" if drop is None else f"best drop {drop:.2f} pp with {count} float layers"
    return f"cannot reach the limit: {best}"
