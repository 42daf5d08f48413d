"""The Q/DQ INT8 model TensorRT builds from, checked on the tiny model, for real (about 25 s).

It is made exactly as an INT8 engine build makes it (:func:`tensorrt_qdq_onnx`: the suite's prepared
model and calibration ranges, the ranges file the ONNX Runtime INT8 model is quantized from, laid out
by ``QuantRecipe.for_tensorrt()``), then checked structurally against what TensorRT needs (signed
INT8, zero points 0, per-channel weights on axis 0 with their own Q/DQ pair, FP32 bias, an opset
TensorRT 8.5 parses) and numerically against the FP32 model on real digits images, run in ONNX
Runtime's reference mode (graph optimizations off: each Q and DQ executes as written, the layer
between them in float), which emulates what TensorRT computes rather than ONNX Runtime's x86 INT8
kernels, whose results depend on the CPU's instruction set.
"""

import numpy as np
import onnx
from onnx import numpy_helper

from ptqcore.backends.onnxruntime import OrtRunner
from ptqcore.backends.tensorrt import tensorrt_qdq_onnx
from ptqcore.case import Case, Precision
from ptqcore.options.suite_options import SuiteOptions
from ptqcore.study.session import Study


def predictions(path, images):
    with OrtRunner(path, reference=True) as runner:
        return np.concatenate([runner.infer(images[i : i + 25]) for i in range(0, len(images), 25)])


def test_tensorrt_qdq_model_is_signed_symmetric_per_channel_and_agrees_with_fp32(tmp_path):
    suite = Study(SuiteOptions(models=("tiny",), cache_dir=tmp_path / "cache", train_epochs=2, eval_size=100))
    # the ONNX Runtime case's prepared model and ranges: the very inputs a TensorRT INT8 build shares
    # wherever both backends export at the same opset (TensorRT itself cannot be imported here)
    case = Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "minmax")
    int8 = suite.int8_inputs(case)
    path = tensorrt_qdq_onnx(int8, case.recipe, tmp_path / "model.qdq.onnx")
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    # TensorRT 8.5 (JetPack 5.1) reads opset 17 at most
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17
    # signed INT8 with every zero point 0, activations and weights alike
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 10
    for node in qdq:
        zero_point = initializers[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    # each Conv / Gemm weight: float initializer -> its own Q -> DQ, per channel on axis 0; bias stays FP32
    layers = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert [n.op_type for n in layers] == ["Conv"] * 4 + ["Gemm"]
    for layer in layers:
        dq = producers[layer.input[1]]
        q = producers[dq.input[0]]
        assert (dq.op_type, q.op_type) == ("DequantizeLinear", "QuantizeLinear")
        weight, scale = initializers[q.input[0]], initializers[dq.input[1]]
        assert weight.dtype == np.float32  # TensorRT 8.x rejects INT8 weight initializers
        assert scale.shape == (weight.shape[0],) and (scale > 0).all()
        axis = {a.name: a.i for a in dq.attribute}.get("axis", 1)
        assert axis == 0
        assert consumers[q.output[0]] == [dq] and consumers[dq.output[0]] == [layer]  # a dedicated pair
        bias = layer.input[2]
        assert bias in initializers and initializers[bias].dtype == np.float32 and bias not in producers
    assert not [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT32]  # no quantized bias
    # activations are quantized with their own scale at the input of every layer
    assert all(producers[layer.input[0]].op_type == "DequantizeLinear" for layer in layers)

    data = suite.dataset(case.model)
    images = np.concatenate([batch for batch, _ in data.evaluation_batches(50)])
    labels = np.concatenate([label for _, label in data.evaluation_batches(50)])
    fp32 = predictions(suite.onnx(case.model).path, images).argmax(1)
    int8_top1 = predictions(path, images).argmax(1)
    assert len(images) == 100
    assert (int8_top1 == fp32).mean() >= 0.9
    assert (int8_top1 == labels).mean() >= (fp32 == labels).mean() - 0.05
