"""The ONNX Runtime part of the tiny model's INT8 path, run by tests/test_kernel_probe.py on an emulated CPU.

Not a test module: ``qemu-x86_64 -cpu EPYC-Milan python emulated_int8.py PREPARED RANGES EVAL.npz OUT.json
SCRATCH`` (the host trained, exported and calibrated the model: torch under qemu is slow). Here:
the kernel self-test, what ``auto`` picks from it with this process's flags (the host's, under
qemu) and with a VNNI host's flags, then per layout (auto's and plain u8s8) quantization from the
saved ranges and the evaluation images' top-1 with the optimized kernels, and for auto's layout
with the fake-quant reference (``ORT_DISABLE_ALL``) of the same Q/DQ file too (no instruction set
changes it, so the host runs the u8s8 control's). Writes JSON; no timing means anything here.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from ptqcore.backends.onnxruntime import OrtRunner
from ptqcore.build.kernel_probe import probe_record, probe_this_cpu, resolve_recipe
from ptqcore.build.quantize import QuantRecipe, qdq_onnx_from_onnx
from ptqcore.cpu_isa import detect_cpu_isa, isa_from_flags
from ptqcore.measure.accuracy import drop_pp, predict

#: What /proc/cpuinfo shows under qemu on an Ice Lake (or Zen 4) host: VNNI the emulated CPU lacks.
VNNI_HOST_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni")


def main(prepared: str, ranges: str, images: str, out: str, scratch: str) -> None:
    started = time.perf_counter()
    isa, probe = detect_cpu_isa(), probe_this_cpu()
    vnni_host = isa_from_flags("x86_64", VNNI_HOST_FLAGS, "a VNNI host's /proc/cpuinfo")
    auto = resolve_recipe("auto", isa, probe)
    data = np.load(images)
    batches = [(data["images"][i:i + 32], data["labels"][i:i + 32]) for i in range(0, len(data["labels"]), 32)]
    layouts = {}
    for layout in dict.fromkeys((auto, "u8s8")):
        path = qdq_onnx_from_onnx(Path(prepared), Path(ranges), QuantRecipe.for_onnxruntime_cpu("minmax", layout),
                                  Path(scratch) / f"{layout}.onnx")
        with OrtRunner(path, 2) as real:
            layouts[layout] = {"path": str(path), "top1": predict(real.infer, batches).top1_accuracy}
        if layout == auto:  # the reference is the slow part under qemu: the u8s8 control's is left to the host
            with OrtRunner(path, 2, reference=True) as fake:
                reference = predict(fake.infer, batches).top1_accuracy
            layouts[layout].update(top1_reference=reference, kernel_drop_pp=drop_pp(reference, layouts[layout]["top1"]))
    result = {"isa": isa.name, "probe": probe_record(isa, probe), "auto": auto,
              "auto_with_vnni_host_flags": resolve_recipe("auto", vnni_host, probe),
              "vnni_host_probe": probe_record(vnni_host, probe), "images": len(data["labels"]),
              "layouts": layouts, "seconds": time.perf_counter() - started}
    Path(out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
