"""TensorRT version dispatch: what each version offers, what a build does on it, cache keys, availability.

Everything runs against the fakes in ``tests/fakes/tensorrt_fakes.py`` (each mirrors one named
version's API surface); the availability test runs on this machine, which has no TensorRT.
"""

import subprocess
import sys

import pytest
from fakes.tensorrt_fakes import AVAILABLE, FAKE_VERSIONS, make_tensorrt
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.backends import get_backend, tensorrt_unavailable_reason
from ptqcore.backends.tensorrt import (
    TensorRTBackend,
    TrtBuildOptions,
    TrtCapabilities,
    calibration_cache_inputs,
    engine_cache_inputs,
    onnx_export_for_tensorrt,
    parse_version,
    plan_build,
    timing_cache_inputs,
)
from ptqcore.case import Case, Precision
from ptqcore.errors import PtqError
from ptqcore.store import stable_key

# version -> (v3, io names, bindings, FP16/INT8 flags, implicit INT8, explicit-batch flag needed,
#             STRONGLY_TYPED flag, always strongly typed)
EXPECTED = {
    "8.4.1.5": (False, False, True, True, True, True, False, False),
    "8.5.2.2": (True, True, True, True, True, True, False, False),
    "8.6.2.3": (True, True, True, True, True, True, False, False),
    "10.3.0.30": (True, True, False, True, True, False, True, False),
    "10.16.1.11": (True, True, False, True, True, False, True, False),
    "11.1.0": (True, True, False, False, False, False, True, True),
}


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_capabilities_are_read_from_the_names_each_version_has(version):
    caps = TrtCapabilities.from_module(make_tensorrt(version))
    assert caps.version == parse_version(version)
    assert (
        caps.has_v3_execution, caps.has_io_tensor_api, caps.has_bindings_api, caps.has_builder_fp16_int8_flags,
        caps.has_implicit_int8_calibrator, caps.needs_explicit_batch_flag, caps.has_strongly_typed_flag,
        caps.strongly_typed,
    ) == EXPECTED[version]
    assert caps.has_memory_pool_limit and caps.has_engine_inspector and caps.has_timing_cache
    assert caps.has_calibration_profile == (version != "11.1.0")


def test_the_fakes_mirror_the_documented_removals():
    eleven, ten, eight_five = make_tensorrt("11.1.0"), make_tensorrt("10.3.0.30"), make_tensorrt("8.5.2.2")
    for name in ("FP16", "INT8"):
        assert not hasattr(eleven.BuilderFlag, name) and hasattr(ten.BuilderFlag, name)
    assert not hasattr(eleven, "IInt8EntropyCalibrator2") and hasattr(ten, "IInt8EntropyCalibrator2")
    assert not hasattr(eleven.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert not hasattr(ten.Builder, "build_engine") and hasattr(eight_five.Builder, "build_engine")
    assert not hasattr(ten.IExecutionContext, "execute_async_v2")
    assert hasattr(eight_five.IExecutionContext, "execute_async_v2") and hasattr(eight_five.IExecutionContext, "execute_async_v3")
    with pytest.raises(AttributeError):
        eleven.Builder(eleven.Logger()).create_builder_config().int8_calibrator = object()


def test_the_fakes_mirror_what_the_bindings_kept_and_added():
    """pyCore.cpp: execute_v2 and BuilderFlag.DIRECT_IO are still bound in 11.0/11.1; FP8 is new in 8.6."""
    eleven, ten = make_tensorrt("11.1.0"), make_tensorrt("10.3.0.30")
    eight_six, eight_five = make_tensorrt("8.6.2.3"), make_tensorrt("8.5.2.2")
    assert hasattr(eleven.IExecutionContext, "execute_v2") and hasattr(ten.IExecutionContext, "execute_v2")
    assert hasattr(eleven.BuilderFlag, "DIRECT_IO") and hasattr(ten.BuilderFlag, "DIRECT_IO")
    assert hasattr(eight_six.BuilderFlag, "FP8") and not hasattr(eight_five.BuilderFlag, "FP8")
    assert not hasattr(eleven.BuilderFlag, "FP8") and not hasattr(eight_six.BuilderFlag, "BF16")
    assert hasattr(eight_five.ProfilingVerbosity, "DETAILED")
    assert all(span.first <= span.last and ("release/" in span.source or "names.json" in span.source)
               for span in AVAILABLE.values())  # read from a release branch, or from the real wheels
    for version, described in FAKE_VERSIONS.items():
        assert version in make_tensorrt(version).__doc__ and described.startswith(f"TensorRT {version}")


def plan(version, precision, **options):
    return plan_build(TrtCapabilities.from_module(make_tensorrt(version)), precision, TrtBuildOptions(**options))


@pytest.mark.parametrize("version", ["8.4.1.5", "8.5.2.2", "8.6.2.3", "10.3.0.30"])
def test_before_11_fp16_and_int8_are_builder_flags(version):
    batch = ("EXPLICIT_BATCH",) if version.startswith("8.") else ()
    fp32, fp16, int8 = (plan(version, p) for p in ("fp32", "fp16", "int8"))
    assert (fp32.builder_flags, fp32.network_source, fp32.network_flags) == ((), "fp32-onnx", batch)
    assert (fp16.strategy, fp16.builder_flags, fp16.network_source) == ("fp16-builder-flag", ("FP16",), "fp32-onnx")
    assert (int8.strategy, int8.builder_flags, int8.network_source) == ("int8-explicit-qdq", ("INT8", "FP16"), "qdq-onnx")
    assert plan(version, "int8", fp16_fallback=False).builder_flags == ("INT8",)
    assert not any(p.strongly_typed for p in (fp32, fp16, int8))
    implicit = plan(version, "int8", int8_strategy="implicit-entropy")
    assert (implicit.calibrator, implicit.network_source, implicit.builder_flags) == (True, "fp32-onnx", ("INT8", "FP16"))


def test_on_11_precision_comes_from_the_onnx_and_the_network_is_strongly_typed():
    fp32, fp16, int8 = (plan("11.1.0", p) for p in ("fp32", "fp16", "int8"))
    for built in (fp32, fp16, int8):
        assert built.strongly_typed and built.builder_flags == () and built.network_flags == ("STRONGLY_TYPED",)
    assert (fp16.strategy, fp16.network_source) == ("fp16-onnx", "fp16-onnx")
    assert (int8.strategy, int8.network_source) == ("int8-explicit-qdq", "qdq-onnx")


def test_implicit_calibration_is_refused_on_11_with_the_reason():
    with pytest.raises(PtqError) as caught:
        plan("11.1.0", "int8", int8_strategy="implicit-entropy")
    message = str(caught.value)
    assert "IInt8EntropyCalibrator2" in message and "removed in 11.0" in message
    assert "explicit" in caught.value.fix
    backend = TensorRTBackend(TrtBuildOptions(int8_strategy="implicit-entropy"), trt=make_tensorrt("11.1.0"))
    reason = backend.unsupported_reason(Case("resnet18", Precision.INT8, "tensorrt", "cuda", 1, "entropy"))
    assert reason and "removed in 11.0" in reason
    assert backend.unsupported_reason(Case("resnet18", Precision.FP16, "tensorrt", "cuda", 1)) is None
    assert backend.unsupported_reason(Case("resnet18", Precision.BASE, "tensorrt", "cuda", 1))  # not a TensorRT precision


def test_tf32_can_be_cleared_for_strict_fp32():
    assert plan("10.3.0.30", "fp32", tf32=False).cleared_flags == ("TF32",)
    assert plan("10.3.0.30", "fp32").cleared_flags == ()


def test_export_settings_follow_the_parser():
    assert onnx_export_for_tensorrt("8.0.1.6") == ("legacy", 13)  # JetPack 4.6: onnx-tensorrt 8.0/8.2 stop at 13
    assert onnx_export_for_tensorrt("8.2.1.8") == ("legacy", 13)
    assert onnx_export_for_tensorrt("8.4.1.5") == ("legacy", 17)  # onnx-tensorrt 8.4-GA: up to opset 17
    assert onnx_export_for_tensorrt("8.5.2.2") == ("legacy", 17)
    assert onnx_export_for_tensorrt((10, 3)) == ("legacy", 17)
    assert parse_version("10.3.0.30") == (10, 3, 0, 30) and parse_version("11.1.0.post1") == (11, 1, 0)


def test_options_are_validated():
    for bad in (dict(batch_size=0), dict(int8_strategy="legacy"), dict(workspace_mib=0), dict(calibration_method="kl")):
        with pytest.raises(ValueError):
            TrtBuildOptions(**bad)


def test_this_machine_reports_tensorrt_as_not_installed():
    reason = tensorrt_unavailable_reason()
    assert reason and reason.startswith("TensorRT is not installed (")
    assert get_backend("tensorrt").unavailable_reason() == reason


def test_importing_the_backend_needs_neither_tensorrt_nor_torch():
    code = ("import sys, ptqcore.backends.tensorrt, ptqcore.backends.cuda; "
            "print(sorted(m for m in ('tensorrt', 'torch', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- cache keys ---------------------------------------------------------------------------------------
names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
fields = st.tuples(names, names, names, hashes)


@given(fields, fields, st.sampled_from(["fp32", "fp16", "int8"]))
def test_engine_keys_differ_whenever_version_gpu_capability_or_model_differ(a, b, precision):
    options = TrtBuildOptions()
    key_a = stable_key(engine_cache_inputs(*a, precision, options))
    key_b = stable_key(engine_cache_inputs(*b, precision, options))
    assert (key_a == key_b) == (a == b)
    assert stable_key(timing_cache_inputs(*a)) != stable_key(engine_cache_inputs(*a, precision, options))
    assert (stable_key(timing_cache_inputs(*a)) == stable_key(timing_cache_inputs(*b))) == (a == b)
    calib_a, calib_b = (stable_key(calibration_cache_inputs(*x, "0" * 64, 8)) for x in (a, b))
    assert (calib_a == calib_b) == (a == b)


@given(fields, st.integers(1, 64), st.integers(1, 64))
def test_engine_keys_depend_on_the_build_options_but_not_on_cache_paths(device_and_model, batch_a, batch_b):
    a = engine_cache_inputs(*device_and_model, "int8", TrtBuildOptions(batch_size=batch_a, timing_cache="/x"))
    b = engine_cache_inputs(*device_and_model, "int8", TrtBuildOptions(batch_size=batch_b, timing_cache="/y"))
    assert (stable_key(a) == stable_key(b)) == (batch_a == batch_b)


def test_empty_key_fields_are_refused():
    with pytest.raises(ValueError):
        engine_cache_inputs("10.3.0", "", "8.7", "a" * 64, "fp16", TrtBuildOptions())
