"""The TensorRT names of the code and of the fakes, against the real bindings of each release.

``tests/data/tensorrt/names.json`` is written by ``scripts/tensorrt_names.py`` from the binding
wheels on PyPI (``tensorrt-bindings`` 8.6.1, ``tensorrt-cu12-bindings`` 10.0-11.4): for every name
the code or a fake uses (its last part), whether the release's extension module holds it as a string
of its own (``exact``), only as the end of a longer string (``tail``: the linker stores a string that
ends another once, so this is weaker evidence) or not at all (then it is certainly not bound).
TensorRT 8.4 and 8.5 (JetPack 5) have no bindings on PyPI; the fakes' ``Span`` sources stand in.
"""

import enum
import importlib.util
import json
from pathlib import Path
from typing import Dict, List, Mapping

import pytest

from fakes.tensorrt_fakes import AVAILABLE, FAKE_VERSIONS, Span, make_tensorrt

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tests" / "data" / "tensorrt" / "names.json"
REGENERATE = "run python scripts/tensorrt_names.py (it downloads the binding wheels) and commit names.json"


def _script():
    spec = importlib.util.spec_from_file_location("tensorrt_names", ROOT / "scripts" / "tensorrt_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version(release: str):
    major, minor = release.split(".")[:2]
    return int(major), int(minor)


def _covers(span: Span, release: str) -> bool:
    return span.first <= _version(release) <= span.last


def _enum_owners() -> set:
    """Owners in ``AVAILABLE`` that are enums: their members' names (``FP16``) recur in other enums."""
    owners = {name.split(".")[0] for name in AVAILABLE if "." in name}
    found = set()
    for version in FAKE_VERSIONS:
        module = make_tensorrt(version)
        found |= {owner for owner in owners
                  if isinstance(getattr(module, owner, None), type) and issubclass(getattr(module, owner), enum.Enum)}
    return found


def mismatches(table: Mapping, available: Mapping[str, Span], code: set) -> List[str]:
    """One line per name where the fakes or the code disagree with the real bindings of a release."""
    enums = _enum_owners()
    out = []
    for release, found in table["releases"].items():
        exact, tail = set(found["exact"]), set(found["tail"])
        for name, span in sorted(available.items()):
            bare, owner = name.rsplit(".", 1)[-1], name.split(".")[0] if "." in name else None
            if _covers(span, release) and bare not in exact | tail:
                out.append(f"{name}: the fake of TensorRT {release} has it; the real bindings ({found['source']}) do not")
            shared = any(other != name and other.rsplit(".", 1)[-1] == bare and _covers(s, release)
                         for other, s in available.items())
            if not _covers(span, release) and bare in exact and owner not in enums and not shared:
                out.append(f"{name}: the fake of TensorRT {release} lacks it; the real bindings ({found['source']}) have it")
        for name in sorted(code - set(available)):
            if name.rsplit(".", 1)[-1] not in exact | tail:
                out.append(f"trt.{name} (used by backends/tensorrt, no Span in the fakes): absent from TensorRT {release}"
                           f" ({found['source']})")
    return out


@pytest.fixture(scope="module")
def table() -> Dict:
    return json.loads(TABLE.read_text())


def test_the_table_covers_every_name_the_code_and_the_fakes_use_now(table):
    assert table["candidates"] == sorted(_script().candidates()), f"names.json is stale: {REGENERATE}"
    assert set(table["releases"]) == set(_script().RELEASES) and set(table["stand_ins"]) == {"8.4", "8.5"}


def test_the_fakes_and_the_code_use_the_names_each_real_release_binds(table):
    assert mismatches(table, AVAILABLE, _script().code_names()) == []


def test_a_name_planted_missing_from_one_release_is_named_with_that_release(table):
    planted = json.loads(json.dumps(table))
    planted["releases"]["10.3"]["exact"].remove("execute_async_v3")
    found = mismatches(planted, AVAILABLE, _script().code_names())
    assert found == [f"IExecutionContext.execute_async_v3: the fake of TensorRT 10.3 has it; the real bindings"
                     f" ({table['releases']['10.3']['source']}) do not"]


def test_a_removed_name_a_fake_still_offers_is_caught_and_a_code_name_outside_the_fakes_too(table):
    stale = dict(AVAILABLE, **{"ICudaEngine.num_bindings": Span((8, 0), (10, 99), "planted: kept too long")})
    assert any(line.startswith("ICudaEngine.num_bindings: the fake of TensorRT 10.0 has it") for line in
               mismatches(table, stale, set()))
    early = dict(AVAILABLE, **{"Builder.build_engine": Span((11, 0), (11, 99), "planted: wrong span")})
    assert "Builder.build_engine: the fake of TensorRT 8.6 lacks it; the real bindings" in \
        " ".join(mismatches(table, early, set()))
    assert mismatches(table, AVAILABLE, {"Builder.build_serialized_network_v9"}) != []


def test_the_code_names_are_read_from_the_backend_modules():
    names = _script().code_names()
    assert {"BuilderFlag", "OnnxParser", "IInt8EntropyCalibrator2", "MemoryPoolType.WORKSPACE"} <= names
