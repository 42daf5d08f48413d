"""Fake ``tensorrt`` modules that mirror the Python API surface of named TensorRT versions.

TensorRT cannot be installed on the project's machines, so the backend is tested against these.
``make_tensorrt(version)`` returns a fresh module named ``tensorrt`` whose classes and enums carry
exactly the names of :data:`AVAILABLE` that exist in that version: a name removed in a version is
absent from its fake (``hasattr`` is False, setting a removed property raises AttributeError), so
code that still used it fails the way it would on the real library. The table covers the names
ptqcore uses and the ones that tell versions apart. Every entry was read from TensorRT's own Python
bindings (NVIDIA/TensorRT ``python/src/infer/pyCore.cpp`` and ``pyInt8.cpp`` on the release branches)
and says so in its :class:`Span` ``source``: e.g. 11.0 removed ``BuilderFlag.FP16`` / ``INT8``,
``IBuilderConfig.int8_calibrator``, ``IInt8EntropyCalibrator2`` and ``EXPLICIT_BATCH`` but kept
``IExecutionContext.execute_v2`` and ``BuilderFlag.DIRECT_IO``; 10.0 removed the bindings API and
``Builder.build_engine``; 8.6 added ``BuilderFlag.FP8``; 8.5 added the name-based ``execute_async_v3``.

Behaviour is simulated only as far as the tests need: the ONNX parser reads the real file (op
types, inputs, opset), the builder enforces the rules ptqcore must follow (explicit batch on 8.x,
an optimization profile for a dynamic input, ``BuilderFlag.INT8`` for Q/DQ networks in weakly typed
mode, the calibrator protocol) and returns a JSON "plan"; the runtime rejects plans of another
version; an execution context computes ``logits[n, c] = mean(input[n]) * (c + 1)`` through the
buffers registered in ``module.memory`` (see ``devices.FakeCudaDevice``). Every call is recorded in
``module.calls`` as a tuple ``(name, *arguments)``.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

#: The versions a fake exists for, with what each mirrors.
FAKE_VERSIONS: Dict[str, str] = {
    "8.4.1.5": "TensorRT 8.4.1.5 (JetPack 5.0.2): bindings API only, set_memory_pool_limit is new",
    "8.5.2.2": "TensorRT 8.5.2.2 (JetPack 5.1.x): bindings API and the new name-based execute_async_v3",
    "8.6.2.3": "TensorRT 8.6.2.3 (JetPack 6.0): the last 8.x, both execution APIs",
    "10.3.0.30": "TensorRT 10.3.0.30 (JetPack 6.1/6.2): bindings API and build_engine removed, STRONGLY_TYPED opt-in",
    "10.16.1.11": "TensorRT 10.16.1.11 (x86 wheels): FP16/INT8 builder flags deprecated since 10.12, still bound",
    "11.1.0": "TensorRT 11.1.0 (x86 wheels): always strongly typed, no FP16/INT8 flags, no implicit INT8",
}

OPEN = (99, 99)


class Span(NamedTuple):
    """When a name exists: ``first`` .. ``last`` (major, minor), both inclusive, and ``source``: the
    NVIDIA/TensorRT binding file (``python/src/infer/``) and release branch it was read from, where it
    first appears and where it is first absent (branches checked: release/8.0, 8.2, 8.4, 8.5, 8.6,
    9.0, 10.0, 10.3, 11.0, 11.1; a name gone in 10.0 was still in 9.x, so its ``last`` is 9.x)."""

    first: Tuple[int, int]
    last: Tuple[int, int]
    source: str


#: Where the DLA names' spans come from (no release branch was read for them).
DLA_SOURCE = "tensorrt.so strings of 8.6.1 to 11.4.0 (tests/data/tensorrt/names.json); 8.4/8.5: no PyPI bindings, not re-read"
#: name -> :class:`Span`. Every entry mirrors the Python bindings of the releases it names.
AVAILABLE: Dict[str, Span] = {
    "IInt8EntropyCalibrator2": Span((8, 0), (10, 99), "pyInt8.cpp @ release/8.0, absent @ release/11.0 (pyInt8.cpp removed)"),
    "MemoryPoolType": Span((8, 4), OPEN, "pyCore.cpp @ release/8.4, still @ release/11.1"),
    "TensorIOMode": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ProfilingVerbosity": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
    "ProfilingVerbosity.DETAILED": Span((8, 2), OPEN, "pyCore.cpp @ release/8.2, still @ release/11.1"),
    "LayerInformationFormat": Span((8, 2), OPEN, "pyCore.cpp @ release/8.2, still @ release/11.1"),
    "BuilderFlag.FP16": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    "BuilderFlag.INT8": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    "BuilderFlag.TF32": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
    "BuilderFlag.REFIT": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
    "BuilderFlag.STRICT_TYPES": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS": Span((8, 2), (10, 99), "pyCore.cpp @ release/8.2, absent @ release/11.0"),
    "BuilderFlag.PREFER_PRECISION_CONSTRAINTS": Span((8, 2), (10, 99), "pyCore.cpp @ release/8.2, absent @ release/11.0"),
    "BuilderFlag.DIRECT_IO": Span((8, 2), OPEN, "pyCore.cpp @ release/8.2, still @ release/11.1"),
    "BuilderFlag.BF16": Span((9, 0), (10, 99), "pyCore.cpp @ release/9.0, absent @ release/11.0"),
    "BuilderFlag.FP8": Span((8, 6), (10, 99), "pyCore.cpp @ release/8.6, absent @ release/11.0"),
    "BuilderFlag.STRIP_PLAN": Span((10, 0), OPEN, "pyCore.cpp @ release/10.0, still @ release/11.1"),
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    "NetworkDefinitionCreationFlag.EXPLICIT_PRECISION": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": Span((9, 0), OPEN, "pyCore.cpp @ release/9.0, still @ release/11.1"),
    "IBuilderConfig.set_memory_pool_limit": Span((8, 4), OPEN, "pyCore.cpp @ release/8.4, still @ release/11.1"),
    "IBuilderConfig.get_memory_pool_limit": Span((8, 4), OPEN, "pyCore.cpp @ release/8.4, still @ release/11.1"),
    "IBuilderConfig.max_workspace_size": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "IBuilderConfig.int8_calibrator": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    "IBuilderConfig.set_calibration_profile": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    "IBuilderConfig.builder_optimization_level": Span((8, 6), OPEN, "pyCore.cpp @ release/8.6, still @ release/11.1"),
    "Builder.build_engine": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "Builder.platform_has_fast_fp16": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    "Builder.platform_has_fast_int8": Span((8, 0), (10, 99), "pyCore.cpp @ release/8.0, absent @ release/11.0"),
    # the DLA API: present in every release the real name table covers
    **{name: Span((8, 0), OPEN, DLA_SOURCE) for name in (
        "DeviceType", "BuilderFlag.GPU_FALLBACK", "IBuilderConfig.default_device_type", "IBuilderConfig.DLA_core",
        "IBuilderConfig.can_run_on_DLA", "Builder.num_DLA_cores")},
    "ICudaEngine.num_bindings": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.get_binding_name": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.get_binding_index": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.binding_is_input": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.get_binding_shape": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.get_binding_dtype": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.get_profile_shape": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "ICudaEngine.num_io_tensors": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ICudaEngine.get_tensor_name": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ICudaEngine.get_tensor_mode": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ICudaEngine.get_tensor_shape": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ICudaEngine.get_tensor_dtype": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ICudaEngine.get_tensor_profile_shape": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "ICudaEngine.create_engine_inspector": Span((8, 2), OPEN, "pyCore.cpp @ release/8.2, still @ release/11.1"),
    "IExecutionContext.execute_async_v2": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "IExecutionContext.execute_v2": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
    "IExecutionContext.set_binding_shape": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "IExecutionContext.get_binding_shape": Span((8, 0), (9, 99), "pyCore.cpp @ release/8.0, absent @ release/10.0"),
    "IExecutionContext.execute_async_v3": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "IExecutionContext.set_tensor_address": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "IExecutionContext.set_input_shape": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    "IExecutionContext.get_tensor_shape": Span((8, 5), OPEN, "pyCore.cpp @ release/8.5, still @ release/11.1"),
    # py::class_<IProfiler, PyProfiler>(m, "IProfiler") with py::init<>() and "report_layer_time"(layer_name, ms),
    # and IExecutionContext's def_property("profiler", ...): called once per layer for execute_v2 / enqueue
    "IProfiler": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
    "IProfiler.report_layer_time": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
    "IExecutionContext.profiler": Span((8, 0), OPEN, "pyCore.cpp @ release/8.0, still @ release/11.1"),
}

#: The newest ONNX opset each fake's parser reads, where the tests rely on it.
#: onnx/onnx-tensorrt docs/operators.md: "up to Opset 17" on release/8.4-GA and 8.5-GA (8.6 the same).
MAX_OPSET = {(8, 4): 17, (8, 5): 17, (8, 6): 17}

PLAN_MAGIC = b"FAKE-TENSORRT-PLAN\n"


def _major_minor(version: str) -> Tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def make_tensorrt(version: str):
    """A fresh fake ``tensorrt`` module mirroring ``version`` (one of :data:`FAKE_VERSIONS`)."""
    import types

    if version not in FAKE_VERSIONS:
        raise ValueError(f"no fake for TensorRT {version}; have {sorted(FAKE_VERSIONS)}")
    mm = _major_minor(version)

    def has(name: str) -> bool:
        span = AVAILABLE[name]
        return span.first <= mm <= span.last

    trt = types.ModuleType("tensorrt", f"Fake tensorrt mirroring {FAKE_VERSIONS[version]}.")
    trt.__version__ = version
    trt.calls = []
    trt.memory = {}  # data_ptr -> torch tensor, filled by FakeCudaDevice
    trt.unsupported_ops = set()
    trt.fail_build = None  # an error message to make build_serialized_network fail
    trt.dla_cores = 0  # the board's DLA cores (Builder.num_DLA_cores): 0 on Orin Nano and desktop GPUs
    #: op types the fake says DLA cannot run (the fake's own rule, for the fallback bookkeeping; not DLA's list)
    trt.dla_unsupported_ops = {"Gemm", "Flatten", "GlobalAveragePool"}
    trt.inspector_text = None  # what the inspector returns instead of the generated JSON
    trt.capturing = None  # a FakeGraph while a CUDA graph is captured
    trt.fail_capture = None  # an error message: an execute under capture fails with it
    trt.timeline = None  # a list (FakeCudaDevice's) that execute calls are appended to, in order
    trt.layer_ms = lambda index, name: 0.01 * (index + 1)  # what the profiler is told each layer took

    def record(*call) -> None:
        trt.calls.append(call)

    trt.calls_named = lambda name: [call for call in trt.calls if call[0] == name]

    def enum_of(name: str, members: Dict[str, int]):
        kept = {k: v for k, v in members.items() if f"{name}.{k}" not in AVAILABLE or has(f"{name}.{k}")}
        return enum.IntEnum(name, kept)

    trt.BuilderFlag = enum_of("BuilderFlag", {
        "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "STRICT_TYPES": 4, "REFIT": 5, "DISABLE_TIMING_CACHE": 6,
        "TF32": 7, "SPARSE_WEIGHTS": 8, "SAFETY_SCOPE": 9, "OBEY_PRECISION_CONSTRAINTS": 10,
        "PREFER_PRECISION_CONSTRAINTS": 11, "DIRECT_IO": 12, "BF16": 17, "FP8": 18, "STRIP_PLAN": 19,
    })
    trt.NetworkDefinitionCreationFlag = enum_of("NetworkDefinitionCreationFlag", {
        "EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1, "STRONGLY_TYPED": 1 if mm >= (9, 0) and mm < (11, 0) else 0,
    })
    trt.DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4})
    numpy_types = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16, trt.DataType.INT8: np.int8,
                   trt.DataType.INT32: np.int32, trt.DataType.BOOL: np.bool_}
    trt.nptype = lambda data_type: numpy_types[data_type]
    if has("DeviceType"):
        trt.DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
    if has("MemoryPoolType"):
        trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})
    if has("TensorIOMode"):
        trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    if has("ProfilingVerbosity"):  # 8.0/8.1: DEFAULT, NONE, VERBOSE; 8.2 renamed them (pyCore.cpp @ release/8.2)
        trt.ProfilingVerbosity = enum_of("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2}
                                         if has("ProfilingVerbosity.DETAILED") else {"DEFAULT": 0, "NONE": 1, "VERBOSE": 2})
    if has("LayerInformationFormat"):
        trt.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})

    class ILogger:
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})

        def __init__(self) -> None:
            pass

        def log(self, severity, msg) -> None:
            pass

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (ILogger.Severity(i) for i in range(5))

        def __init__(self, min_severity=ILogger.Severity.WARNING) -> None:
            super().__init__()
            self.min_severity = min_severity

    trt.ILogger, trt.Logger = ILogger, Logger
    held_logger: list = []

    def single_logger(logger):
        """TensorRT keeps one logger pointer while any builder or runtime exists; a different logger given
        to a later one is ignored (TensorRT 8.0.1's warning: "TensorRT maintains only a single logger
        pointer at any given time, so the existing value ... will be used instead", NVIDIA/TensorRT issue
        #1475). The fake never releases it: ptqcore's runners keep their runtime for the session."""
        if not held_logger:
            held_logger.append(logger)
        return held_logger[0]

    class Strict:
        """Setting an attribute the class does not define fails, as on pybind11 objects."""

        def __setattr__(self, name, value):
            if not name.startswith("_") and not hasattr(type(self), name):
                raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
            object.__setattr__(self, name, value)

    if has("IInt8EntropyCalibrator2"):
        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class ITensor:
        def __init__(self, name: str, shape: Tuple[int, ...], dtype) -> None:
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class ILayer:
        def __init__(self, name: str, op: str) -> None:
            self.name, self.op = name, op

    class INetworkDefinition:
        def __init__(self, flags: Tuple[str, ...]) -> None:
            self.flags = flags
            self.inputs: List[ITensor] = []
            self.outputs: List[ITensor] = []
            self.ops: List[str] = []
            self.initializer_types: List[int] = []
            self.parsed = False

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.ops))

        def get_layer(self, index: int) -> "ILayer":
            return ILayer(f"{self.ops[index]}_{index}", self.ops[index])

        def get_input(self, index: int) -> ITensor:
            return self.inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self.outputs[index]

    class ParserError:
        def __init__(self, node: int, code: str, desc: str) -> None:
            self._node, self._code, self._desc = node, code, desc

        def node(self) -> int:
            return self._node

        def code(self) -> str:
            return self._code

        def desc(self) -> str:
            return self._desc

        def __str__(self) -> str:
            return f"In node {self._node} (parseGraph): {self._code}: {self._desc}"

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger) -> None:
            self.network, self.logger, self.errors = network, logger, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, index: int) -> ParserError:
            return self.errors[index]

        def parse(self, model: bytes, path: Optional[str] = None) -> bool:
            import onnx

            return self._read(onnx.load_from_string(model), path)

        def parse_from_file(self, path: str) -> bool:
            import onnx

            return self._read(onnx.load(path), path)

        def _read(self, model, path) -> bool:
            import onnx

            net = self.network
            ops = [node.op_type for node in model.graph.node]
            record("parse", str(path), tuple(sorted(set(ops))))
            if mm < (10, 0) and "EXPLICIT_BATCH" not in net.flags:
                self.errors.append(ParserError(-1, "INVALID_VALUE", "This version of the ONNX parser only supports "
                                               "TensorRT INetworkDefinitions with an explicit batch dimension."))
                return False
            opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
            if mm in MAX_OPSET and opset > MAX_OPSET[mm]:
                self.errors.append(ParserError(-1, "UNSUPPORTED_NODE", f"opset {opset} is newer than {MAX_OPSET[mm]}"))
                return False
            for number, op in enumerate(ops):
                if op in trt.unsupported_ops:
                    self.errors.append(ParserError(number, "UNSUPPORTED_NODE", f"No importer registered for op: {op}"))
            if self.errors:
                return False
            initializers = {t.name for t in model.graph.initializer}
            types = {onnx.TensorProto.FLOAT: trt.DataType.FLOAT, onnx.TensorProto.FLOAT16: trt.DataType.HALF}

            def tensor(value) -> ITensor:
                tt = value.type.tensor_type
                shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
                return ITensor(value.name, shape, types.get(tt.elem_type, trt.DataType.FLOAT))

            net.inputs = [tensor(v) for v in model.graph.input if v.name not in initializers]
            net.outputs = [tensor(v) for v in model.graph.output]
            net.ops = ops
            net.initializer_types = [t.data_type for t in model.graph.initializer]
            net.parsed = True
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: Dict[str, Tuple[Tuple[int, ...], ...]] = {}

        def set_shape(self, name: str, min, opt, max) -> None:
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class ITimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = bytes(blob)

        def serialize(self) -> bytes:
            return self.blob + b"+tactics"

    class IBuilderConfig(Strict):
        def __init__(self) -> None:
            self._flags = {"TF32"} if hasattr(trt.BuilderFlag, "TF32") else set()
            self._pools: Dict[str, int] = {}
            self._workspace = None
            self._calibrator = None
            self._verbosity = "LAYER_NAMES_ONLY"
            self._profiles: List[IOptimizationProfile] = []
            self._calibration_profile = None
            self._timing_cache = None
            self._level = 3
            self._device_type = trt.DeviceType.GPU if has("DeviceType") else None
            self._dla_core = -1

        def set_flag(self, flag) -> None:
            record("set_flag", flag.name)
            self._flags.add(flag.name)

        def clear_flag(self, flag) -> None:
            record("clear_flag", flag.name)
            self._flags.discard(flag.name)

        def get_flag(self, flag) -> bool:
            return flag.name in self._flags

        def set_memory_pool_limit(self, pool, size: int) -> None:
            record("set_memory_pool_limit", pool.name, size)
            self._pools[pool.name] = size

        def get_memory_pool_limit(self, pool) -> int:
            return self._pools.get(pool.name, 1 << 40)

        def _set_workspace(self, size: int) -> None:
            record("max_workspace_size", size)
            self._workspace = size

        max_workspace_size = property(lambda self: self._workspace, _set_workspace)

        def _set_calibrator(self, calibrator) -> None:
            record("int8_calibrator", type(calibrator).__name__)
            self._calibrator = calibrator

        int8_calibrator = property(lambda self: self._calibrator, _set_calibrator)

        def _set_verbosity(self, verbosity) -> None:
            record("profiling_verbosity", verbosity.name)
            self._verbosity = verbosity.name

        profiling_verbosity = property(lambda self: trt.ProfilingVerbosity[self._verbosity], _set_verbosity)
        builder_optimization_level = property(lambda self: self._level, lambda self, v: setattr(self, "_level", v))

        def _set_device_type(self, device_type) -> None:
            record("default_device_type", device_type.name)
            self._device_type = device_type

        def _set_dla_core(self, core: int) -> None:
            record("DLA_core", core)
            self._dla_core = core

        default_device_type = property(lambda self: self._device_type, _set_device_type)
        DLA_core = property(lambda self: self._dla_core, _set_dla_core)

        def can_run_on_DLA(self, layer) -> bool:
            return layer.op not in trt.dla_unsupported_ops

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            record("add_optimization_profile", dict(profile.shapes))
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
            record("set_calibration_profile", dict(profile.shapes))
            self._calibration_profile = profile
            return True

        def create_timing_cache(self, blob: bytes) -> ITimingCache:
            record("create_timing_cache", bytes(blob))
            return ITimingCache(blob)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            accepted = not cache.blob.startswith(b"OTHER-DEVICE")
            record("set_timing_cache", accepted)
            if accepted:
                self._timing_cache = cache
            return accepted

        def get_timing_cache(self) -> ITimingCache:
            return self._timing_cache

    class Builder:
        def __init__(self, logger) -> None:
            self.logger = single_logger(logger)
            record("Builder", type(logger).__name__)

        platform_has_fast_fp16 = True
        platform_has_fast_int8 = True
        num_DLA_cores = property(lambda self: trt.dla_cores)

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            names = tuple(m.name for m in trt.NetworkDefinitionCreationFlag if flags & (1 << int(m)))
            if mm >= (11, 0):
                names = tuple(n for n in names if n == "STRONGLY_TYPED")
            record("create_network", names)
            return INetworkDefinition(names)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _fail(self, message: str) -> None:
            self.logger.log(ILogger.Severity.ERROR, message)
            record("build_failed", message)

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
            record("build_serialized_network", tuple(sorted(config._flags)))
            strongly_typed = mm >= (11, 0) or "STRONGLY_TYPED" in network.flags
            if trt.fail_build:
                return self._fail(trt.fail_build)
            dynamic = [t for t in network.inputs if any(d < 0 for d in t.shape)]
            profiled = set().union(*(p.shapes for p in config._profiles)) if config._profiles else set()
            if any(t.name not in profiled for t in dynamic):
                return self._fail("Network has dynamic or shape inputs, but no optimization profile has been defined.")
            has_qdq = "QuantizeLinear" in network.ops
            if has_qdq and not strongly_typed and "INT8" not in config._flags:
                return self._fail("Calibration failure occurred with no scaling factors detected: Q/DQ layers need "
                                  "the INT8 builder flag in a weakly typed network")
            calibrator = config._calibrator
            if calibrator is not None and "INT8" in config._flags:
                cache = calibrator.read_calibration_cache()
                batches = 0
                if not cache:
                    while calibrator.get_batch([network.inputs[0].name]) is not None:
                        batches += 1
                    calibrator.write_calibration_cache(b"TRT-FAKE-CALIBRATION-TABLE")
                record("calibrated", batches, bool(cache))
            if config._timing_cache is not None:
                config._timing_cache = ITimingCache(config._timing_cache.blob)
            fp16_weights = 10 in network.initializer_types  # onnx.TensorProto.FLOAT16
            if has_qdq or (calibrator is not None and "INT8" in config._flags):
                precision = "int8"
            elif "FP16" in config._flags or (strongly_typed and fp16_weights):
                precision = "fp16"
            else:
                precision = "fp32"
            plan = {
                "version": version, "precision": precision, "detailed": config._verbosity == "DETAILED",
                "ops": network.ops, "strongly_typed": strongly_typed,
                "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.outputs],
                "profile": {k: [list(s) for s in v] for k, v in (config._profiles[0].shapes if config._profiles else {}).items()},
            }
            return PLAN_MAGIC + json.dumps(plan).encode()

        def build_engine(self, network, config):
            raise AssertionError("ptqcore must use build_serialized_network")

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = single_logger(logger)

        def deserialize_cuda_engine(self, data: bytes):
            data = bytes(data)
            plan = json.loads(data[len(PLAN_MAGIC):]) if data.startswith(PLAN_MAGIC) else None
            if plan is None or plan["version"] != version:
                self.logger.log(ILogger.Severity.ERROR, "The engine plan file is not compatible with this version of TensorRT")
                record("deserialize_cuda_engine", False)
                return None
            record("deserialize_cuda_engine", True)
            return ICudaEngine(plan, self.logger)

    class ICudaEngine:
        def __init__(self, plan: dict, logger=None) -> None:
            self.plan = plan
            self.logger = logger or ILogger()
            self.tensors = [(n, tuple(s), trt.DataType(d), True) for n, s, d in plan["inputs"]]
            self.tensors += [(n, tuple(s), trt.DataType(d), False) for n, s, d in plan["outputs"]]
            self.profile = {k: tuple(tuple(s) for s in v) for k, v in plan["profile"].items()}

        num_layers = property(lambda self: len(self.plan["ops"]))
        num_io_tensors = property(lambda self: len(self.tensors))
        num_bindings = property(lambda self: len(self.tensors))

        def _find(self, name: str) -> int:
            return [t[0] for t in self.tensors].index(name)

        def get_tensor_name(self, index: int) -> str:
            return self.tensors[index][0]

        def get_tensor_mode(self, name: str):
            return trt.TensorIOMode.INPUT if self.tensors[self._find(name)][3] else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str):
            return self.tensors[self._find(name)][1]

        def get_tensor_dtype(self, name: str):
            return self.tensors[self._find(name)][2]

        def get_tensor_profile_shape(self, name: str, profile_index: int):
            return list(self.profile[name])

        def get_binding_name(self, index: int) -> str:
            return self.tensors[index][0]

        def get_binding_index(self, name: str) -> int:
            return self._find(name)

        def binding_is_input(self, index: int) -> bool:
            return self.tensors[index][3]

        def get_binding_shape(self, index: int):
            return self.tensors[index][1]

        def get_binding_dtype(self, index: int):
            return self.tensors[index][2]

        def get_profile_shape(self, profile_index: int, binding):
            name = binding if isinstance(binding, str) else self.tensors[binding][0]
            return list(self.profile[name])

        def create_execution_context(self):
            return IExecutionContext(self)

        def create_engine_inspector(self):
            return EngineInspector(self)

    class IProfiler:
        """The base class user profilers derive from; its ``__init__`` must be called (pybind11)."""

        def __init__(self) -> None:
            self._initialised = True

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            raise RuntimeError("Tried to call pure virtual function \"IProfiler::report_layer_time\"")

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.shapes = {name: shape for name, shape, _, _ in engine.tensors}
            self.addresses: Dict[str, int] = {}
            self.profiler = None

        def _report_layers(self) -> None:
            """Each inspector layer's time to the profiler after a run (not under capture): layer i takes
            ``trt.layer_ms(i, name)`` ms (default ``0.01 * (i + 1)``)."""
            if self.profiler is None:
                return
            assert getattr(self.profiler, "_initialised", False), "IProfiler.__init__ was not called"
            document = json.loads(EngineInspector(self.engine).get_engine_information(trt.LayerInformationFormat.JSON))
            for index, layer in enumerate(document["Layers"]):
                name = layer["Name"] if isinstance(layer, dict) else layer
                if isinstance(layer, dict) and layer.get("LayerType") == "NoOp":
                    continue
                self.profiler.report_layer_time(name, trt.layer_ms(index, name))

        def _resolve_outputs(self) -> None:
            batch = next(self.shapes[name] for name, _, _, is_input in self.engine.tensors if is_input)[0]
            for name, shape, _, is_input in self.engine.tensors:
                if not is_input:
                    self.shapes[name] = (batch, *shape[1:])

        def set_input_shape(self, name: str, shape) -> bool:
            record("set_input_shape", name, tuple(shape))
            low, _, high = self.engine.profile.get(name, (tuple(shape),) * 3)
            if not all(a <= s <= b for a, s, b in zip(low, shape, high)):
                return False
            self.shapes[name] = tuple(shape)
            self._resolve_outputs()
            return True

        def get_tensor_shape(self, name: str):
            return self.shapes[name]

        def set_binding_shape(self, index: int, shape) -> bool:
            record("set_binding_shape", index, tuple(shape))
            name = self.engine.tensors[index][0]
            low, _, high = self.engine.profile.get(name, (tuple(shape),) * 3)
            if not all(a <= s <= b for a, s, b in zip(low, shape, high)):
                return False
            self.shapes[name] = tuple(shape)
            self._resolve_outputs()
            return True

        def get_binding_shape(self, index: int):
            return self.shapes[self.engine.tensors[index][0]]

        def set_tensor_address(self, name: str, address: int) -> bool:
            record("set_tensor_address", name, address)
            self.addresses[name] = address
            return True

        def _run(self, addresses: Dict[str, int]) -> bool:
            if trt.capturing is not None and trt.fail_capture:  # e.g. an op not permitted under capture
                trt.capturing.invalidated = True
                self.engine.logger.log(ILogger.Severity.ERROR, trt.fail_capture)
                return False
            if trt.capturing is not None:  # captured work runs at replay, not now
                trt.capturing.steps.append(lambda: self._run(addresses))
                return True
            (inp,) = [n for n, _, _, is_input in self.engine.tensors if is_input]
            (out,) = [n for n, _, _, is_input in self.engine.tensors if not is_input]
            x = trt.memory[addresses[inp]].reshape(-1)[: int(np.prod(self.shapes[inp]))].reshape(self.shapes[inp])
            y = trt.memory[addresses[out]].reshape(-1)[: int(np.prod(self.shapes[out]))].reshape(self.shapes[out])
            mean = x.reshape(x.shape[0], -1).float().mean(dim=1, keepdim=True)
            classes = np.arange(1, y.shape[1] + 1, dtype=np.float32)
            import torch

            y.copy_(mean * torch.from_numpy(classes))
            self._report_layers()
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            record("execute_async_v3", stream_handle)
            if trt.timeline is not None:
                trt.timeline.append("execute_async_v3")
            return self._run(self.addresses)

        def execute_async_v2(self, bindings: List[int], stream_handle: int) -> bool:
            record("execute_async_v2", tuple(bindings), stream_handle)
            if trt.timeline is not None:
                trt.timeline.append("execute_async_v2")
            return self._run({name: bindings[i] for i, (name, _, _, _) in enumerate(self.engine.tensors)})

        def execute_v2(self, bindings: List[int]) -> bool:  # synchronous; still bound in 11.1
            raise AssertionError("ptqcore must run asynchronously on its own stream")

    class EngineInspector:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.execution_context = None

        def get_engine_information(self, fmt) -> str:
            record("get_engine_information", fmt.name)
            if trt.inspector_text is not None:
                return trt.inspector_text
            return generated_engine_information(self.engine.plan)

    for name in AVAILABLE:
        owner, _, attribute = name.partition(".")
        cls = {"IBuilderConfig": IBuilderConfig, "Builder": Builder, "ICudaEngine": ICudaEngine,
               "IExecutionContext": IExecutionContext}.get(owner)
        if attribute and cls is not None and not has(name):
            delattr(cls, attribute)
    trt.ITensor, trt.INetworkDefinition, trt.OnnxParser = ITensor, INetworkDefinition, OnnxParser
    trt.IOptimizationProfile, trt.ITimingCache, trt.IBuilderConfig = IOptimizationProfile, ITimingCache, IBuilderConfig
    trt.Builder, trt.Runtime, trt.ICudaEngine, trt.IExecutionContext = Builder, Runtime, ICudaEngine, IExecutionContext
    trt.EngineInspector = EngineInspector
    trt.IProfiler = IProfiler
    return trt


#: Format/Datatype strings TensorRT 8.x-10.x write for each precision (from published inspector output).
_FORMATS = {
    "fp32": "Row major linear FP32",
    "fp16": "Channel major FP16 format where channel % 8 == 0",
    "int8": "Thirty-two wide channel vectorized row major Int8 format",
}


def generated_engine_information(plan: dict) -> str:
    """Inspector JSON for a fake plan: a reformat layer for a reduced-precision input, then one layer
    per Conv/Gemm in the plan's precision; layer names only when the build was not DETAILED."""
    precision = plan["precision"]
    layers = []
    if precision != "fp32":
        layers.append({"Name": "Reformatting CopyNode for Input Tensor 0 to node_0", "LayerType": "Reformat",
                       "ParameterType": "Reformat", "Origin": "QDQ" if precision == "int8" else "REFORMAT",
                       "Inputs": [{"Name": "input", "Format/Datatype": _FORMATS["fp32"]}],
                       "Outputs": [{"Name": "input_reformatted", "Format/Datatype": _FORMATS[precision]}]})
    for number, op in enumerate(o for o in plan["ops"] if o in ("Conv", "Gemm")):
        layers.append({"Name": f"node_{number}", "LayerType": "CaskConvolution" if op == "Conv" else "CaskGemm",
                       "ParameterType": "Convolution" if op == "Conv" else "FullyConnected",
                       "Inputs": [{"Name": f"t{number}", "Format/Datatype": _FORMATS[precision]}],
                       "Outputs": [{"Name": f"t{number + 1}", "Format/Datatype": _FORMATS[precision]}]})
    if not plan["detailed"]:
        layers = [layer["Name"] for layer in layers]
    return json.dumps({"Layers": layers, "Bindings": [t[0] for t in plan["inputs"] + plan["outputs"]]})


def read_plan(path: Path) -> dict:
    """The JSON a fake builder wrote as the engine at ``path``."""
    data = Path(path).read_bytes()
    assert data.startswith(PLAN_MAGIC), f"{path} is not a fake plan"
    return json.loads(data[len(PLAN_MAGIC):])
