"""ptqcore: a pytest-benchmark suite that characterizes post-training quantization.

Importing this package is cheap and works on any machine: torch, onnxruntime, TensorRT and the
telemetry libraries are imported only by the modules that need them.
"""

__version__ = "0.1.0"
