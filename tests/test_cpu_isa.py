"""The CPU's INT8 support and the ONNX Runtime INT8 layout chosen for it (pure logic, recorded flag sets).

The flag sets are excerpts of real /proc/cpuinfo lines (x86 ``flags``, ARM64 ``Features``): only
the flags that matter plus a few neighbours, so that a parser picking the wrong token would fail.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.build.kernel_probe import kernel_drop_hint, resolve_recipe
from ptqcore.build.quantize import QuantRecipe
from ptqcore.cpu_isa import (
    ARM_INT8_DOT_FLAGS,
    INT8_RECIPES,
    X86_INT8_DOT_FLAGS,
    _proc_cpuinfo_flags,
    detect_cpu_isa,
    isa_from_flags,
    recipe_for_isa,
)

COMMON_X86 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2"
RECORDED = {
    # (arch, flags) -> (expected name, expected recipe)
    "AMD Zen 3 (EPYC 7003), AVX2 only": ("x86_64", COMMON_X86, "x86-no-vnni", "u8s8-reduce-range"),
    "Intel Skylake-SP, AVX-512 without VNNI": ("x86_64", COMMON_X86 + " avx512f avx512bw avx512vl avx512cd",
                                               "x86-no-vnni", "u8s8-reduce-range"),
    "Intel Ice Lake-SP, AVX-512 VNNI": ("x86_64", COMMON_X86 + " avx512f avx512bw avx512_vnni avx512_vbmi2",
                                        "x86-avx512_vnni", "u8s8"),
    "AMD Zen 4 / Zen 5, AVX-512 VNNI": ("x86_64", COMMON_X86 + " avx512f avx512_bf16 avx512_vnni avx512_bitalg",
                                        "x86-avx512_vnni", "u8s8"),
    "Intel Sapphire Rapids, AMX": ("x86_64", COMMON_X86 + " avx512f avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8",
                                   "x86-avx512_vnni+avx_vnni+amx_int8", "u8s8"),
    "Intel Alder Lake, AVX-VNNI without AVX-512": ("x86_64", COMMON_X86 + " avx_vnni", "x86-avx_vnni", "u8s8"),
    "AWS Graviton 2 (Neoverse N1)": ("aarch64", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp"
                                     " cpuid asimdrdm lrcpc dcpop asimddp ssbs", "arm64-asimddp", "s8s8"),
    "Jetson AGX Orin (Cortex-A78AE)": ("aarch64", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp"
                                       " cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm", "arm64-asimddp", "s8s8"),
    "Graviton 3 (Neoverse V1), dot product and i8mm": ("aarch64", "fp asimd asimddp sve i8mm bf16 svei8mm",
                                                       "arm64-asimddp+i8mm", "s8s8"),
    "Jetson Nano (Cortex-A57), no dot product": ("aarch64", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid",
                                                 "arm64-no-dotprod", "s8s8"),
    "unknown architecture": ("riscv64", "rv64imafdc", "other-riscv64", "u8s8-reduce-range"),
}


@pytest.mark.parametrize("cpu", sorted(RECORDED))
def test_recorded_cpus_get_the_layout_onnx_runtime_documents_for_them(cpu):
    arch, flags, name, recipe = RECORDED[cpu]
    isa = isa_from_flags(arch, flags.split())
    assert isa.name == name
    assert recipe_for_isa(isa) == recipe
    assert resolve_recipe("auto", isa) == recipe
    for forced in INT8_RECIPES:
        assert resolve_recipe(forced, isa) == forced


@given(st.sets(st.sampled_from(X86_INT8_DOT_FLAGS + ("avx2", "avx512f", "avx512bw", "sse4_2", "avx512_bf16"))))
def test_x86_gets_plain_u8s8_exactly_when_it_has_an_int8_dot_product(flags):
    isa = isa_from_flags("x86_64", flags)
    has_dot = bool(set(flags) & set(X86_INT8_DOT_FLAGS))
    assert isa.has_int8_dot == has_dot
    assert recipe_for_isa(isa) == ("u8s8" if has_dot else "u8s8-reduce-range")


@given(st.sets(st.sampled_from(ARM_INT8_DOT_FLAGS + ("asimd", "fp", "sve", "bf16"))))
def test_arm64_always_gets_s8s8(flags):
    isa = isa_from_flags("aarch64", flags)
    assert recipe_for_isa(isa) == "s8s8"
    assert isa.has_int8_dot == bool(set(flags) & set(ARM_INT8_DOT_FLAGS))


def test_proc_cpuinfo_parsing_reads_the_first_processor_flags_and_arm_features():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert _proc_cpuinfo_flags(x86) == {"fpu", "avx2", "avx512_vnni"}
    arm = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n"
    assert _proc_cpuinfo_flags(arm) == {"fp", "asimd", "asimddp"}
    assert _proc_cpuinfo_flags("") == frozenset()


def test_this_machine_is_detected_and_auto_resolves_to_a_known_layout():
    isa = detect_cpu_isa()
    assert isa.source in ("/proc/cpuinfo", "py-cpuinfo", "none")
    assert resolve_recipe("auto") in INT8_RECIPES
    assert isa.as_dict()["name"] == isa.name


def test_bad_recipe_names_are_refused():
    with pytest.raises(ValueError, match="auto, u8s8"):
        resolve_recipe("u8u8")
    with pytest.raises(ValueError, match="layout must be one of"):
        QuantRecipe.for_onnxruntime_cpu("minmax", "int4")


@pytest.mark.parametrize("layout", INT8_RECIPES)
def test_quant_recipes_say_what_they_are(layout):
    recipe = QuantRecipe.for_onnxruntime_cpu("minmax", layout)
    assert recipe.layout == layout
    fields = recipe.record_fields()
    assert fields["int8_recipe"] == layout and fields["per_channel"] is True
    assert fields["reduce_range"] == (layout == "u8s8-reduce-range")
    assert fields["activation_type"] == ("int8" if layout == "s8s8" else "uint8") and fields["weight_type"] == "int8"
    assert QuantRecipe.for_tensorrt().layout == "s8s8-symmetric"


def test_kernel_hint_names_vnni_saturation_only_where_it_applies():
    zen3 = isa_from_flags("x86_64", COMMON_X86.split())
    vnni = isa_from_flags("x86_64", ["avx512_vnni"])
    assert "U8S8 saturation" in kernel_drop_hint("onnxruntime", "u8s8", zen3)
    assert "u8s8-reduce-range" in kernel_drop_hint("onnxruntime", "u8s8", zen3)
    assert "saturation" not in kernel_drop_hint("onnxruntime", "u8s8-reduce-range", zen3)
    assert "saturation" not in kernel_drop_hint("onnxruntime", "u8s8", vnni)
    assert "layers_by_precision" in kernel_drop_hint("tensorrt", "s8s8-symmetric", zen3)
