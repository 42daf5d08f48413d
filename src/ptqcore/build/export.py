"""Phase 1: PyTorch -> ONNX, and the checks every ONNX file goes through before it is used.

The graph has one input ``input`` (N, 3, H, W) and one output ``logits`` (N, classes), with a
dynamic batch dimension, and all weights inside the file (no external data), so the file's size
is the model's size.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

from ptqcore.errors import BuildError, ModelLoadError, error_line

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORTERS = ("legacy", "dynamo")
#: Opset 17 is the newest that TensorRT 8.5 (JetPack 5.1) parses; the study used 15.
DEFAULT_OPSET = 17


def onnx_from_torch(model, out_path: Path, size: int, opset: int = DEFAULT_OPSET, exporter: str = "legacy") -> Path:
    """Export ``model`` (eval mode, FP32, CPU) for ``size`` x ``size`` inputs to ``out_path``.

    ``legacy`` is the TorchScript exporter (any opset from 7, what TensorRT 8.x wants); ``dynamo``
    is torch.export (opset >= 18, torch >= 2.5). The result is checked with :func:`check_onnx`.
    """
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    model.eval()
    example = (torch.zeros(1, 3, size, size),)
    kwargs = dict(
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
    )
    accepts = inspect.signature(torch.onnx.export).parameters
    if exporter == "dynamo":
        if "dynamo" not in accepts:
            raise BuildError(f"torch {torch.__version__} has no dynamo ONNX exporter", "use --ptq-exporter legacy")
        if opset < 18:
            raise BuildError(f"the dynamo exporter cannot write opset {opset}", "use opset >= 18 or --ptq-exporter legacy")
        kwargs.update(dynamo=True, external_data=False, dynamic_shapes=({0: torch.export.Dim("batch")},))
    else:
        kwargs.update(dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, do_constant_folding=True)
        if "dynamo" in accepts:
            kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        with torch.no_grad():
            torch.onnx.export(model, example, str(out_path), **kwargs)
    check_onnx(out_path)
    return Path(out_path)


def check_onnx(path: Path):
    """Load and validate an ONNX file; :class:`ModelLoadError` naming the file and the fix if it is broken."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:  # onnx raises DecodeError, ValidationError, OSError...
        raise ModelLoadError(
            f"{path} is not a valid ONNX model ({error_line(err)})",
            "re-export it (torch.onnx.export) or point the suite at an intact file",
        ) from None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelLoadError(f"{path} has {len(inputs)} inputs {inputs}", "give a classifier with one image input")
    return model
