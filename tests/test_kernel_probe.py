"""The INT8 kernel self-test (:mod:`ptqcore.build.kernel_probe`): the pure decision on recorded results, the
probe's design, the real probe on this machine, and the tiny model's INT8 path on an emulated AVX2 CPU.

The recorded errors are what the probe measured (ONNX Runtime 1.32.0): on an AMD EPYC Zen 3 (AVX2,
no VNNI) natively and under ``qemu-x86_64 -cpu EPYC-Milan`` alike, u8s8 0.141, u8s8-reduce-range
0.0, s8s8 0.141; where kernels are exact, every layout 0.0.
"""

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ptqcore
from ptqcore.build.kernel_probe import (
    FASTEST_FIRST,
    TOLERANCE,
    ProbeResult,
    choose_layout,
    disagreement,
    flags_agree,
    kernel_drop_hint,
    probe_integers,
    probe_model,
    probe_record,
    probe_summary,
    probe_this_cpu,
    resolve_recipe,
    run_probe,
)
from ptqcore.cpu_isa import (
    INT8_RECIPES,
    detect_cpu_isa,
    isa_from_flags,
    recipe_for_isa,
)

ZEN3 = isa_from_flags("x86_64", ["sse4_2", "avx", "fma", "avx2", "bmi2"])
ICE_LAKE = isa_from_flags("x86_64", ["sse4_2", "avx", "avx2", "avx512f", "avx512bw", "avx512_vnni"])
ORIN = isa_from_flags("aarch64", ["fp", "asimd", "asimddp"])
RISCV = isa_from_flags("riscv64", ["rv64imafdc"])
SATURATED = {"u8s8": 0.141, "u8s8-reduce-range": 0.0, "s8s8": 0.141}  # measured: Zen 3, and qemu EPYC-Milan
EXACT = {"u8s8": 0.0, "u8s8-reduce-range": 0.0, "s8s8": 0.0}
NOTHING_PASSES = {"u8s8": 0.3, "u8s8-reduce-range": 0.05, "s8s8": float("nan")}

RECORDED = {
    # case: (flags, probe errors, auto's layout, flags agree)
    "Zen 3 natively: flags and kernels say U8S8 saturates": (ZEN3, SATURATED, "u8s8-reduce-range", True),
    "qemu EPYC-Milan on a VNNI host: flags say u8s8, kernels saturate": (ICE_LAKE, SATURATED, "u8s8-reduce-range",
                                                                         False),
    "Ice Lake natively: VNNI, exact kernels": (ICE_LAKE, EXACT, "u8s8", True),
    "a VM hiding VNNI: exact kernels, the flags' layout kept": (ZEN3, EXACT, "u8s8-reduce-range", False),
    "Orin: exact kernels": (ORIN, EXACT, "s8s8", True),
    "ARM64 whose S8S8 kernels are off: the next fastest that passes": (ORIN, {**EXACT, "s8s8": 0.2}, "u8s8", False),
    "nothing passes: the flags' layout": (ZEN3, NOTHING_PASSES, "u8s8-reduce-range", False),
    "the probe could not run: the flags alone": (ICE_LAKE, {}, "u8s8", None),
    "an unknown architecture: no prediction to compare": (RISCV, SATURATED, "u8s8-reduce-range", None),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_auto_on_recorded_flags_and_probe_results(name):
    isa, errors, layout, agree = RECORDED[name]
    assert choose_layout(isa, errors) == layout
    assert flags_agree(isa, errors) is agree
    assert resolve_recipe("auto", isa, ProbeResult("1.32.0", errors)) == layout
    assert (disagreement(isa, errors) is not None) == (agree is False)
    assert resolve_recipe("auto", isa) == recipe_for_isa(isa)  # no probe given: the flags alone
    for forced in INT8_RECIPES:
        assert resolve_recipe(forced, isa, ProbeResult("1.32.0", errors)) == forced


ERROR = st.one_of(st.floats(0, 1), st.just(float("nan")), st.just(float("inf")))
FLAGS = st.sets(st.sampled_from(("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "i8mm")))


@given(st.sampled_from(("x86_64", "aarch64", "riscv64")), FLAGS,
       st.dictionaries(st.sampled_from(INT8_RECIPES), ERROR))
def test_auto_keeps_the_flags_choice_when_it_passes_else_takes_the_fastest_that_passes(arch, flags, errors):
    isa = isa_from_flags(arch, flags)
    chosen, preferred = choose_layout(isa, errors), recipe_for_isa(isa)
    passing = [layout for layout, error in errors.items() if error <= TOLERANCE]
    if not errors or preferred in passing or not passing:
        assert chosen == preferred
    else:
        order = FASTEST_FIRST.get(isa.family, INT8_RECIPES)
        assert chosen in passing and all(layout not in passing for layout in order[:order.index(chosen)])
    agree = flags_agree(isa, errors)
    assert (agree is None) == (isa.family == "other" or not ({preferred, "u8s8"} & set(errors)))
    if agree and "u8s8" in errors and isa.family == "x86":
        assert ("u8s8" in passing) == isa.has_int8_dot  # agreeing flags predicted U8S8's fate


def test_probe_data_saturate_vpmaddubsw_pairs_in_u8s8_and_cannot_with_reduced_weights():
    """What the probe relies on: without VNNI the kernels sum two u8 x s8 products in int16 (s8s8's
    activations are shifted by +128 to uint8 first); with 8-bit weights most pairs overflow 32767,
    with reduce-range weights ([-64, 64]) none can."""
    for layout in INT8_RECIPES:
        _, _, x_q, w_q, _, _, _ = probe_integers(layout)
        a = x_q + 128 if layout == "s8s8" else x_q  # as the U8S8 kernels see them: 128..255 in every layout
        assert a.min() >= 128 and a.max() <= 255
        patch = a[0, :, :3, :3].reshape(-1)  # one 3x3 window, all 16 channels: 144 products per output
        products = w_q.reshape(w_q.shape[0], -1) * patch
        pairs = products[:, 0::2] + products[:, 1::2]
        if "reduce-range" in layout:
            assert np.abs(w_q).max() <= 64 and 2 * 255 * np.abs(w_q).max() <= 32767
            assert pairs.max() <= 32767
        else:
            assert np.abs(w_q).max() == 127 and (pairs > 32767).mean() > 0.5


@pytest.mark.parametrize("layout", INT8_RECIPES)
def test_probe_model_is_a_per_channel_qdq_conv_in_its_layout(layout):
    from onnx import checker, numpy_helper

    model, x = probe_model(layout)
    checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv",
                                                      "QuantizeLinear", "DequantizeLinear"]
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert init["x_zero"].dtype == (np.int8 if layout == "s8s8" else np.uint8)
    assert init["w_q"].dtype == np.int8 and init["w_scale"].shape == (16,)
    assert x.shape == (1, 16, 8, 8) and 0.5 <= x.min() and x.max() < 1.0


def test_the_probe_on_this_machine_reaches_the_integer_kernels_and_agrees_with_the_flags_where_it_can():
    """Natively the flags and the kernels see the same CPUID, so: x86 without an INT8 dot product
    (this Zen 3 host: no avx512_vnni in /proc/cpuinfo) saturates in u8s8; ARM64 does not in s8s8;
    reduce-range never can. With VNNI flags the kernels may still lack it (qemu shows the host's
    flags), so U8S8's result is not predicted there."""
    isa, probe = detect_cpu_isa(), probe_this_cpu()
    assert probe.error is None, probe.error
    assert set(probe.errors) == set(INT8_RECIPES) and all(not math.isnan(e) for e in probe.errors.values())
    for layout in ("u8s8", "u8s8-reduce-range"):
        assert "QLinearConv" in probe.kernel_ops[layout], probe.kernel_ops  # the integer kernels, not a float Conv
    assert probe.errors["u8s8-reduce-range"] <= TOLERANCE, probe.errors
    if isa.family == "x86" and not isa.has_int8_dot:
        assert probe.errors["u8s8"] > 5 * TOLERANCE, probe.errors
        assert flags_agree(isa, probe.errors) is True and resolve_recipe("auto") == "u8s8-reduce-range"
    if isa.family == "arm64":
        assert probe.errors["s8s8"] <= TOLERANCE, probe.errors
    assert resolve_recipe("auto") == choose_layout(isa, probe.errors)
    assert probe_this_cpu() is probe  # once per process
    assert 0 < probe.seconds < 5  # tens of ms: a loose bound on a shared machine


def test_a_probe_onnx_runtime_cannot_run_falls_back_to_the_flags_and_says_so(monkeypatch):
    from onnx import helper

    import ptqcore.build.kernel_probe as kp

    def broken(layout):
        model, x = real(layout)
        model.graph.node[3].CopyFrom(helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], pads=[1, 1]))  # 2-D pads on 4-D
        return model, x

    real = kp.probe_model
    monkeypatch.setattr(kp, "probe_model", broken)
    probe = run_probe()
    assert probe.errors == {} and probe.error and "\n" not in probe.error
    record = probe_record(ICE_LAKE, probe)
    assert record["error"].endswith("auto used the CPU flags alone") and record["auto_choice"] == "u8s8"
    assert record["flags_agree"] is None and record["layouts"] == {}
    assert resolve_recipe("auto", ICE_LAKE, probe) == "u8s8"
    assert "self-test failed" in probe_summary(ICE_LAKE, probe)


def test_a_suite_whose_probe_failed_uses_the_flags_and_records_why(monkeypatch, tmp_path):
    import ptqcore.suite
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    monkeypatch.setattr(ptqcore.suite, "probe_this_cpu", lambda: ProbeResult("1.32.0", error="Fail: no kernels"))
    suite = Study(SuiteOptions(models=("tiny",), cache_dir=tmp_path))
    assert suite.int8_layout == recipe_for_isa(detect_cpu_isa())
    record = suite.environment()["cpu_isa"]["kernel_probe"]
    assert record["error"] == "Fail: no kernels; auto used the CPU flags alone"
    assert Study(SuiteOptions(models=("tiny",), cache_dir=tmp_path, int8_recipe="s8s8")).kernel_probe is None


def test_the_record_and_the_report_header_say_what_auto_chose_from_what():
    from ptqcore.plugin import SUITE_KEY, pytest_report_header

    probe = ProbeResult("1.32.0", {**SATURATED, "s8s8": float("nan")}, {"u8s8": ("QLinearConv",)}, 0.012)
    record = probe_record(ICE_LAKE, probe)
    json.dumps(record, allow_nan=False)  # NaN is recorded as None
    assert record["layouts"]["u8s8"] == {"relative_error": 0.141, "passed": False, "kernel_ops": ["QLinearConv"]}
    assert record["layouts"]["s8s8"]["relative_error"] is None and not record["layouts"]["s8s8"]["passed"]
    assert record["flags_choice"] == "u8s8" and record["auto_choice"] == "u8s8-reduce-range"
    assert record["flags_agree"] is False and record["onnxruntime"] == "1.32.0" and record["tolerance"] == TOLERANCE
    options = SimpleNamespace(models=("tiny",), precisions=(), backends=("onnxruntime",), dataset="digits",
                              cache_dir="c")
    config = SimpleNamespace(stash={SUITE_KEY: SimpleNamespace(options=options, cpu_isa=ICE_LAKE, kernel_probe=probe)})
    header = pytest_report_header(config)
    assert "u8s8 14.1% FAIL" in header[1] and header[1].endswith("auto uses u8s8-reduce-range")
    assert header[2].startswith("ptqcore: WARNING: the CPU flags (x86-avx512_vnni) suggest u8s8")
    config.stash[SUITE_KEY].kernel_probe = ProbeResult("1.32.0", SATURATED)
    config.stash[SUITE_KEY].cpu_isa = ZEN3
    assert len(pytest_report_header(config)) == 2  # flags and kernels agree: no warning
    config.stash[SUITE_KEY].kernel_probe = None  # a forced recipe: no probe was run for it
    assert len(pytest_report_header(config)) == 1


def test_the_kernel_hint_reports_what_the_self_test_measured():
    saturated = ProbeResult("1.32.0", SATURATED)
    hint = kernel_drop_hint("onnxruntime", "u8s8", ICE_LAKE, saturated)
    assert "kernel self-test shows U8S8 saturating on this CPU" in hint and "14.1%" in hint
    assert "--ptq-int8-recipe u8s8-reduce-range" in hint
    exact = kernel_drop_hint("onnxruntime", "u8s8-reduce-range", ZEN3, saturated)
    assert "exact" in exact and "saturat" not in exact
    assert "no layout passes" in kernel_drop_hint("onnxruntime", "u8s8", ZEN3, ProbeResult("1.32.0", NOTHING_PASSES))
    assert "U8S8 saturation" in kernel_drop_hint("onnxruntime", "u8s8", ZEN3, ProbeResult("1.32.0", error="E: x"))
    assert "layers_by_precision" in kernel_drop_hint("tensorrt", "s8s8-symmetric", ZEN3, saturated)


QEMU = shutil.which("qemu-x86_64")
EMULATED = Path(__file__).resolve().parent / "emulated_int8.py"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason=f"qemu-x86_64 runs this venv's x86-64 Python; this machine is {platform.machine()}")
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 is not installed (Debian: apt-get install qemu-user),"
                    " so the emulated AVX2 CPU (EPYC-Milan, no VNNI) is not available")
def test_tiny_int8_on_an_emulated_avx2_cpu_auto_picks_reduce_range_and_its_kernels_match(tiny_cache, tiny_settings,
                                                                                        tmp_path):
    """Host: the trained tiny model's prepared ONNX, ranges and its evaluation images. Under
    ``qemu-x86_64 -cpu EPYC-Milan`` (AVX2, no VNNI; /proc/cpuinfo still the host's): the self-test,
    auto's choice (also with a VNNI host's flags, as qemu would show them there), and the top-1 of
    the optimized kernels vs the fake-quant reference for auto's layout; and plain u8s8's kernels,
    which must lose more than 1 pp there against their reference (run here: it is CPU-independent),
    else the emulated CPU would prove nothing. Results only, no timings."""
    from ptqcore.backends.onnxruntime import OrtRunner
    from ptqcore.case import Case, Precision
    from ptqcore.measure.accuracy import drop_pp, predict
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    suite = Study(SuiteOptions(models=("tiny",), cache_dir=tiny_cache, **tiny_settings))
    int8 = suite.int8_inputs(Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "minmax"))
    batches = list(suite.dataset("tiny_cnn").evaluation_batches(32))
    np.savez(str(tmp_path / "eval.npz"), images=np.concatenate([b[0] for b in batches]),
             labels=np.concatenate([b[1] for b in batches]))
    out = tmp_path / "emulated.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(ptqcore.__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([QEMU, "-cpu", "EPYC-Milan", sys.executable, str(EMULATED), str(int8.prepared_onnx),
                           str(int8.ranges), str(tmp_path / "eval.npz"), str(out), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    stderr = [line for line in done.stderr.splitlines() if "TCG doesn't support requested feature" not in line]
    assert done.returncode == 0, f"the emulated run failed (exit {done.returncode}): {' | '.join(stderr[-5:])}"
    result = json.loads(out.read_text())
    probe = result["probe"]
    assert probe["error"] is None and result["images"] == tiny_settings["eval_size"]
    assert not probe["layouts"]["u8s8"]["passed"] and probe["layouts"]["u8s8-reduce-range"]["passed"], probe
    assert result["auto"] == "u8s8-reduce-range" and result["auto_with_vnni_host_flags"] == "u8s8-reduce-range"
    assert result["vnni_host_probe"]["flags_agree"] is False
    chosen, plain = result["layouts"]["u8s8-reduce-range"], result["layouts"]["u8s8"]
    assert chosen["kernel_drop_pp"] <= 1.0, result["layouts"]
    with OrtRunner(Path(plain["path"]), reference=True) as fake:  # the reference is the same on any CPU
        plain_reference = predict(fake.infer, batches).top1_accuracy
    assert drop_pp(plain_reference, plain["top1"]) > 1.0, (plain_reference, result["layouts"])  # U8S8 saturates there
