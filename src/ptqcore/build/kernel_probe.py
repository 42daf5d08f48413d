"""ONNX Runtime's INT8 kernels asked directly: which layouts compute what their Q/DQ graph says on this CPU.

``/proc/cpuinfo`` can disagree with the CPU the kernels run on: under qemu user mode it shows the
host's flags while the kernels run on the emulated CPU, and hypervisors may hide or pass flags.
So ``--ptq-int8-recipe auto`` does not trust the flags alone (:func:`ptqcore.cpu_isa.recipe_for_isa`):
it asks the kernels. The self-test (:func:`run_probe`) builds one Q/DQ Conv by hand (16 -> 16
channels, 3x3, 8x8 input, inputs and weights uniform in [0.5, 1)) in each layout of
:data:`~ptqcore.cpu_isa.INT8_RECIPES`, quantized as ptqcore's recipes quantize (activations
asymmetric from [0, max], weights symmetric per output channel, 7-bit for reduce-range), runs it
with ``ORT_ENABLE_ALL`` (fused into ``QLinearConv``, the integer kernels) and with
``ORT_DISABLE_ALL`` (the fake-quant reference: every Q and DQ as written, the Conv in float), and
reports ``||optimized - reference|| / ||reference||`` per layout.

The data is made to saturate: uint8 activations are 128..255 and 8-bit weights 64..127, so the
int16 sum of two u8 x s8 products that ``VPMADDUBSW`` forms without VNNI (up to 2*255*127 = 64770)
overflows 32767; ONNX Runtime's reduce-range weights ([-64, 64]) keep it under 2*255*64 = 32640.

Measured with ONNX Runtime 1.32.0 on an AMD EPYC (Zen 3, AVX2, no VNNI), natively and under
``qemu-x86_64 -cpu EPYC-Milan`` alike: u8s8 14.1%, u8s8-reduce-range 0.0%, s8s8 14.1% (its int8
activations are shifted to uint8 for the same kernels); every optimized graph holds ``QLinearConv``.
The self-test takes 30-50 ms the first time in a process natively, about 10 ms after (the import
of onnxruntime not counted). :data:`TOLERANCE` lies between exact and saturated.

:func:`choose_layout` and :func:`flags_agree` are pure functions of (flags, errors) so that the
decision is unit-tested on recorded results; :func:`probe_this_cpu` runs the self-test once per
process. :func:`resolve_recipe` turns ``--ptq-int8-recipe`` into a layout (``auto``: flags and
self-test), and :func:`kernel_drop_hint` names the likely cause of an INT8 kernel drop. onnx and
onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

from ptqcore.cpu_isa import INT8_RECIPE_CHOICES, INT8_RECIPES, CpuIsa, detect_cpu_isa, recipe_for_isa

#: Largest relative error a layout may show and pass. The measured errors are 0.0% for layouts
#: whose kernels are exact and 14% and more where they saturate; 2% is 7x below the smallest
#: saturation seen and far above rounding (a 1-LSB disagreement on every output would be ~1%).
TOLERANCE = 0.02
#: Layouts fastest first per CPU family: the fallbacks when the flags' choice fails the self-test
#: (x86: U8S8 kernels before S8S8's, README "INT8 on different CPUs"; ARM64: S8S8 is its fast path).
FASTEST_FIRST = {"x86": ("u8s8", "u8s8-reduce-range", "s8s8"), "arm64": ("s8s8", "u8s8", "u8s8-reduce-range")}
#: Op types of an optimized graph that mean the integer kernels run (not a float Conv).
INTEGER_OPS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger")

CHANNELS, KERNEL, SIZE, SEED = 16, 3, 8, 0


@dataclass(frozen=True)
class ProbeResult:
    """What the self-test found: per layout the relative error (``errors``; NaN if its output was not
    finite) and the integer op types of its optimized graph (``kernel_ops``), the ONNX Runtime
    version, the seconds it took, and ``error``: why it could not run (then ``errors`` is empty)."""

    onnxruntime: str
    errors: Dict[str, float] = field(default_factory=dict)
    kernel_ops: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    seconds: float = 0.0
    error: Optional[str] = None


def _passes(errors: Mapping[str, float], layout: str, tolerance: float) -> bool:
    return layout in errors and errors[layout] <= tolerance  # NaN never passes


def choose_layout(isa: CpuIsa, errors: Optional[Mapping[str, float]], tolerance: float = TOLERANCE) -> str:
    """The layout ``auto`` takes: the flags' choice (:func:`recipe_for_isa`) if the self-test's
    ``errors`` pass it (or there are none: the flags alone), else the fastest layout of the family
    (:data:`FASTEST_FIRST`) that passes, else still the flags' choice (nothing passed: no better one)."""
    preferred = recipe_for_isa(isa)
    if not errors or _passes(errors, preferred, tolerance):
        return preferred
    for layout in FASTEST_FIRST.get(isa.family, INT8_RECIPES):
        if _passes(errors, layout, tolerance):
            return layout
    return preferred


def flags_agree(isa: CpuIsa, errors: Optional[Mapping[str, float]], tolerance: float = TOLERANCE) -> Optional[bool]:
    """Whether the flags predicted what the self-test found: the flags' layout passes, and U8S8
    saturates exactly where the flags say (x86 without an INT8 dot product; never on ARM64).
    None where nothing can be compared (no results, or a CPU family the flags say nothing about)."""
    if not errors or isa.family not in FASTEST_FIRST:
        return None
    checks = []
    preferred = recipe_for_isa(isa)
    if preferred in errors:
        checks.append(_passes(errors, preferred, tolerance))
    if "u8s8" in errors:
        saturates = isa.family == "x86" and not isa.has_int8_dot
        checks.append(_passes(errors, "u8s8", tolerance) != saturates)
    return all(checks) if checks else None


def disagreement(isa: CpuIsa, errors: Optional[Mapping[str, float]], tolerance: float = TOLERANCE) -> Optional[str]:
    """One line for the user where flags and self-test disagree (:func:`flags_agree` False), else None."""
    if flags_agree(isa, errors, tolerance) is not False:
        return None
    found = ", ".join(f"{layout} {errors[layout]:.1%}" for layout in INT8_RECIPES if layout in errors)
    return (f"the CPU flags ({isa.name}) suggest {recipe_for_isa(isa)} but the INT8 kernel self-test finds"
            f" relative errors {found} (tolerance {tolerance:.0%}): auto uses {choose_layout(isa, errors, tolerance)}")


def probe_record(isa: CpuIsa, probe: ProbeResult, tolerance: float = TOLERANCE) -> dict:
    """The ``kernel_probe`` entry of the recorded environment: per layout its error and pass/fail,
    the flags' choice and auto's, whether they agree, the ONNX Runtime version, and any error."""
    layouts = {layout: {"relative_error": error if math.isfinite(error) else None,
                        "passed": _passes(probe.errors, layout, tolerance),
                        "kernel_ops": list(probe.kernel_ops.get(layout, ()))}
               for layout, error in probe.errors.items()}
    error = None if probe.error is None else f"{probe.error}; auto used the CPU flags alone"
    return {"onnxruntime": probe.onnxruntime, "tolerance": tolerance, "layouts": layouts,
            "flags_choice": recipe_for_isa(isa), "auto_choice": choose_layout(isa, probe.errors, tolerance),
            "flags_agree": flags_agree(isa, probe.errors, tolerance), "seconds": round(probe.seconds, 4),
            "error": error}


def probe_summary(isa: CpuIsa, probe: ProbeResult, tolerance: float = TOLERANCE) -> str:
    """One line saying what auto chose from what: the report header's."""
    if probe.error is not None:
        return (f"INT8 kernel self-test failed ({probe.error}): auto uses the CPU flags ({isa.name}):"
                f" {recipe_for_isa(isa)}")
    found = ", ".join(f"{layout} {error:.1%}{'' if _passes(probe.errors, layout, tolerance) else ' FAIL'}"
                      for layout, error in probe.errors.items())
    return (f"INT8 kernel self-test (ONNX Runtime {probe.onnxruntime}, {probe.seconds * 1e3:.0f} ms): {found};"
            f" flags {isa.name}; auto uses {choose_layout(isa, probe.errors, tolerance)}")


def probe_integers(layout: str):
    """The probe's float input and weights and their integers in ``layout``: ``(x, w, x_q, w_q,
    x_scale, x_zero, w_scales)``, quantized as ONNX Runtime's quantizer would (module docstring)."""
    import numpy as np

    if layout not in INT8_RECIPES:
        raise ValueError(f"layout must be one of {', '.join(INT8_RECIPES)}, got {layout!r}")
    rng = np.random.default_rng(SEED)
    x = rng.uniform(0.5, 1.0, (1, CHANNELS, SIZE, SIZE)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (CHANNELS, CHANNELS, KERNEL, KERNEL)).astype(np.float32)
    qmin = -128 if layout == "s8s8" else 0
    x_scale, x_zero = np.float32(1.0 / 255), qmin  # range [0, 1]: zero at qmin, as for post-ReLU tensors
    x_q = np.clip(np.round(x / x_scale) + x_zero, qmin, qmin + 255)
    w_max = 64 if "reduce-range" in layout else 127  # ONNX Runtime: [-64, 64] reduced, [-127, 127] symmetric
    w_scales = (np.abs(w).reshape(CHANNELS, -1).max(axis=1) / w_max).astype(np.float32)
    w_q = np.clip(np.round(w / w_scales[:, None, None, None]), -w_max, w_max)
    return x, w, x_q.astype(np.int64), w_q.astype(np.int64), x_scale, x_zero, w_scales


def probe_model(layout: str):
    """The probe's Q/DQ Conv in ``layout`` (opset 13): input Q/DQ, per-channel weight DQ, Conv, output Q/DQ."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x, _, _, w_q, x_scale, x_zero, w_scales = probe_integers(layout)
    act = np.int8 if layout == "s8s8" else np.uint8
    y_scale = np.float32(CHANNELS * KERNEL * KERNEL / 255)  # |y| <= 144: the output's range [0, 144]
    initializers = [
        numpy_helper.from_array(np.array(x_scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(x_zero, act), "x_zero"),
        numpy_helper.from_array(w_q.astype(np.int8), "w_q"),
        numpy_helper.from_array(w_scales, "w_scale"),
        numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(y_scale, np.float32), "y_scale"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=0),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["y", "y_scale", "x_zero"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "x_zero"], ["out"]),
    ]
    graph = helper.make_graph(nodes, f"kernel-probe-{layout}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(x.shape))],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by every supported ONNX Runtime
    return model, x


def _run(model_bytes: bytes, x, optimized: bool, save_to: Optional[str] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimized else level.ORT_DISABLE_ALL
    if save_to:
        options.optimized_model_filepath = save_to
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def probe_layout(layout: str, scratch: str) -> Tuple[float, Tuple[str, ...]]:
    """``(relative error, integer op types of the optimized graph)`` of one layout; raises what ONNX
    Runtime raises. ``scratch``: a folder for the optimized graph."""
    import os

    import numpy as np
    import onnx

    model, x = probe_model(layout)
    data = model.SerializeToString()
    saved = os.path.join(scratch, f"{layout}.onnx")
    optimized = _run(data, x, True, saved).astype(np.float64)
    reference = _run(data, x, False).astype(np.float64)
    error = float(np.linalg.norm(optimized - reference) / np.linalg.norm(reference))
    ops = tuple(sorted({node.op_type for node in onnx.load(saved).graph.node} & set(INTEGER_OPS)))
    return (error if math.isfinite(error) else math.nan), ops


def run_probe(layouts: Sequence[str] = INT8_RECIPES) -> ProbeResult:
    """The self-test of ``layouts`` on this CPU, now; never raises: a failure is the result's ``error``.
    ``seconds`` counts the self-test, not the import of onnx and onnxruntime."""
    import tempfile

    from ptqcore.errors import error_line

    try:
        import onnx  # noqa: F401  (imported before the clock starts: the suite imports both anyway)
        import onnxruntime

        version = onnxruntime.__version__
    except ImportError as err:
        return ProbeResult("unavailable", error=error_line(err))
    started = time.perf_counter()
    errors, kernel_ops = {}, {}
    try:
        with tempfile.TemporaryDirectory(prefix="ptqcore-probe-") as scratch:
            for layout in layouts:
                errors[layout], kernel_ops[layout] = probe_layout(layout, scratch)
    except Exception as err:  # any ONNX Runtime or onnx failure: auto falls back to the flags
        return ProbeResult(version, seconds=time.perf_counter() - started, error=error_line(err))
    return ProbeResult(version, errors, kernel_ops, time.perf_counter() - started)


@functools.lru_cache(maxsize=1)
def probe_this_cpu() -> ProbeResult:
    """:func:`run_probe` of every layout, once per process (the CPU does not change under it)."""
    return run_probe()


def resolve_recipe(choice: str, isa: Optional[CpuIsa] = None, probe: Optional[ProbeResult] = None) -> str:
    """``choice`` itself, or for ``auto`` the layout :func:`choose_layout` picks
    from ``isa``'s flags and the kernel self-test ``probe``. Without ``isa``: this CPU, flags and
    self-test (run once per process); with ``isa`` and no ``probe``: the flags alone (:func:`recipe_for_isa`)."""
    if choice not in INT8_RECIPE_CHOICES:
        raise ValueError(f"INT8 recipe must be one of {', '.join(INT8_RECIPE_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    if isa is None:
        isa, probe = detect_cpu_isa(), probe or probe_this_cpu()
    return choose_layout(isa, probe.errors if probe is not None else None)


def kernel_drop_hint(backend: str, layout: str, isa: CpuIsa, probe: Optional[ProbeResult] = None) -> str:
    """The likely cause of INT8 kernels losing accuracy against their fake-quant reference, and the fix:
    from the kernel self-test ``probe`` of this CPU where it has a result for ``layout``, else the flags."""
    if backend == "onnxruntime" and probe is not None and layout in probe.errors:
        error, auto = probe.errors[layout], choose_layout(isa, probe.errors)
        if not error <= TOLERANCE:
            kind = ("U8S8" if layout == "u8s8" else f"the {layout} kernels") + (
                " saturating" if isa.family == "x86" else " off")
            fix = (f"use --ptq-int8-recipe {auto} (what auto picks here)" if probe.errors.get(auto, 1.0) <= TOLERANCE
                   else "no layout passes it here: compare them with --ptq-int8-layouts")
            return (f"the kernel self-test shows {kind} on this CPU (relative error {error:.1%} against the"
                    f" fake-quant reference; flags {isa.name}): {fix}")
        return (f"the kernel self-test finds ONNX Runtime's {layout} kernels exact on this CPU ({isa.name}, error"
                f" {error:.1%}), so the drop comes from an op it does not cover: try another --ptq-int8-recipe"
                " and compare agreement_reference")
    if backend == "onnxruntime" and isa.family == "x86" and not isa.has_int8_dot and "reduce-range" not in layout:
        return (f"likely U8S8 saturation on a CPU without VNNI ({isa.name}): use --ptq-int8-recipe"
                " u8s8-reduce-range (what auto picks on this CPU)")
    if backend == "onnxruntime":
        return (f"ONNX Runtime's {layout} kernels on {isa.name} compute something other than the Q/DQ graph:"
                " try another --ptq-int8-recipe and compare agreement_reference")
    return (f"the {backend} engine computes something other than its Q/DQ graph: look at layers_by_precision"
            " and reformat_layers in the record")
