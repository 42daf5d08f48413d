"""int8-mixed on TensorRT, through the fake TensorRT modules (``tests/fakes``): the float layers of
the case get no Q/DQ pair in the explicit Q/DQ network, so TensorRT < 11 may run them in FP16 (the
FP16 flag is set beside INT8) and 11 in the float type of the strongly typed network; the implicit
strategy, which has no Q/DQ network, is refused. No GPU: what the real builder then chooses per layer
is not run here."""

import onnx
import pytest
from fakes.devices import FakeCudaDevice
from fakes.tensorrt_fakes import make_tensorrt, read_plan
from test_tensorrt_build import model  # noqa: F401 - the module-scoped fixture: a small CNN, prepared and calibrated

from ptqcore.backends.base import Int8Inputs
from ptqcore.backends.tensorrt import TrtBuildOptions, engine_from_onnx
from ptqcore.errors import PtqError


def _conv_name(prepared) -> str:
    (name,) = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    return name


@pytest.mark.parametrize("version", ["8.5.2.2", "11.1.0"])
def test_float_layers_get_no_qdq_pair_in_the_network_tensorrt_parses(model, tmp_path, version):  # noqa: F811
    onnx_path, int8 = model
    conv = _conv_name(int8.prepared_onnx)
    mixed = Int8Inputs(int8.prepared_onnx, int8.ranges, int8.calibration_images, (conv,))
    trt = make_tensorrt(version)
    info = engine_from_onnx(onnx_path, tmp_path / "m.engine", "int8-mixed", TrtBuildOptions(),
                            mixed, trt=trt, device=FakeCudaDevice(trt))
    graph = onnx.load(str(info.network_source)).graph
    producers = {out: node for node in graph.node for out in node.output}
    (layer,) = [n for n in graph.node if n.name == conv]
    assert all(producers.get(name) is None or producers[name].op_type != "DequantizeLinear" for name in layer.input)
    (gemm,) = [n for n in graph.node if n.op_type == "Gemm"]  # the other layer stays INT8
    assert producers[gemm.input[0]].op_type == "DequantizeLinear"
    flags = [call[1] for call in trt.calls_named("set_flag")]
    assert flags == ([] if version.startswith("11.") else ["INT8", "FP16"])
    assert info.precision == "int8-mixed" and read_plan(info.engine_path)["precision"] == "int8"  # an INT8 engine


def test_int8_mixed_needs_the_explicit_strategy(model, tmp_path):  # noqa: F811
    trt = make_tensorrt("8.5.2.2")
    with pytest.raises(PtqError, match="implicit-entropy strategy has no Q/DQ model"):
        engine_from_onnx(model[0], tmp_path / "x.engine", "int8-mixed", TrtBuildOptions(int8_strategy="implicit-entropy"),
                         model[1], trt=trt)
    assert trt.calls == []

