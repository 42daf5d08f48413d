"""The house's shape holds: layers import only downward, no import circle, no private reach, small modules.

Every ``import`` of ``src/ptqcore`` is read with :mod:`ast`: those at module level, inside
functions and under ``TYPE_CHECKING`` alike. An import of ``ptqcore.a.b`` also runs the package
``ptqcore.a`` (its ``__init__``), so it counts as an import of that package too, unless the
importing module lives inside it (a package is already being imported when its modules load).

The layers, lowest first, are :data:`LAYERS`; the README's "Architecture" tree draws the same ones
(checked: each folder it names exists, each folder of the package is in it).
"""

from __future__ import annotations

import ast
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "ptqcore"
README = ROOT / "README.md"
MAX_LINES = 500

#: Layer name -> the modules in it (a dotted prefix under ``ptqcore``; ``""`` is the package root's own
#: ``__init__``). A module may import its own layer and those listed before it, never one after it.
LAYERS: Sequence[Tuple[str, Tuple[str, ...]]] = (
    ("core", ("", "errors", "case", "records", "store", "environment", "cpu_isa")),
    ("models", ("models",)),
    ("build", ("build",)),
    ("measure", ("measure",)),
    ("backends", ("backends",)),
    ("options", ("options", "pipeline")),
    ("suite", ("suite",)),
    ("study", ("study",)),
    ("results", ("results",)),
    ("entry points", ("plugin", "cli", "doctor")),
)


@dataclass(frozen=True)
class Import:
    """One import of a ``ptqcore`` module: who, where, what (the module it loads) and the names taken."""

    source: str
    file: Path
    line: int
    target: str
    names: Tuple[str, ...]

    def where(self, root: Path) -> str:
        return f"{self.file.relative_to(root.parent.parent)}:{self.line}"


def module_names(package: Path) -> Dict[str, Path]:
    """Dotted module name -> its file, for every module of the package under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _module_of(dotted: str, modules: Dict[str, Path]) -> str:
    while dotted not in modules:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def _is_package(name: str, modules: Dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imports(package: Path) -> List[Import]:
    """Every import of a module of ``package`` by a module of it (module level, functions,
    ``TYPE_CHECKING`` alike), with the parent packages each one runs."""
    modules = module_names(package)
    top = package.name
    found = []
    for source, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".") if _is_package(source, modules) else source.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    dotted = ".".join(base + ([node.module] if node.module else []))
                else:
                    dotted = node.module or ""
                if dotted != top and not dotted.startswith(top + "."):
                    continue
                targets = {}
                for alias in node.names:
                    full = f"{dotted}.{alias.name}"
                    target = full if full in modules else _module_of(dotted, modules)
                    targets.setdefault(target, []).append(alias.name if full not in modules else "")
                for target, names in targets.items():
                    found.append(Import(source, path, node.lineno, target, tuple(n for n in names if n)))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        found.append(Import(source, path, node.lineno, _module_of(alias.name, modules), ()))
    with_parents = []
    for item in found:
        with_parents.append(item)
        parts = item.target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            own = {".".join(item.source.split(".")[:j]) for j in range(1, item.source.count(".") + 2)}
            if parent not in own and parent in modules:
                with_parents.append(Import(item.source, item.file, item.line, parent, ()))
    return with_parents


def layer_of(module: str, layers: Sequence[Tuple[str, Tuple[str, ...]]] = LAYERS) -> int:
    """The index in ``layers`` of ``module`` (``ptqcore.x.y``): its longest matching prefix."""
    inner = module.split(".", 1)[1] if "." in module else ""
    best, index = -1, None
    for i, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if inner == prefix or (prefix and inner.startswith(prefix + ".")):
                if len(prefix) > best:
                    best, index = len(prefix), i
    if index is None:
        raise LookupError(f"{module} is in no layer of LAYERS: add it to one")
    return index


def upward_imports(package: Path) -> List[str]:
    """One line per import of a higher layer: ``file:line: a (layer) imports b (layer)``."""
    out = []
    for item in imports(package):
        low, high = layer_of(item.source), layer_of(item.target)
        if high > low:
            out.append(f"{item.where(package)}: {item.source} ({LAYERS[low][0]}) imports {item.target}"
                       f" ({LAYERS[high][0]}), a higher layer")
    return out


def circles(package: Path) -> List[List[str]]:
    """The import circles (strongly connected components of more than one module), each sorted."""
    graph: Dict[str, set] = {name: set() for name in module_names(package)}
    for item in imports(package):
        if item.target != item.source:
            graph[item.source].add(item.target)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack = set()
    found = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def circle_lines(package: Path, circle: Sequence[str]) -> Iterator[str]:
    """The imports that tie one circle together, as ``file:line: a imports b``."""
    members = set(circle)
    for item in imports(package):
        if item.source in members and item.target in members and item.source != item.target:
            yield f"{item.where(package)}: {item.source} imports {item.target}"


def private_reach(package: Path) -> List[str]:
    """Private names (``_x``, not dunders) one module takes from another, imported or as ``mod._x``."""
    modules = module_names(package)
    out = []
    for item in imports(package):
        for name in item.names:
            if name.startswith("_") and not name.startswith("__") and item.target != item.source:
                out.append(f"{item.where(package)}: {item.source} imports {item.target}'s private {name}")
    for source, path in modules.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(package.name + "."):
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package.name):
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                out.append(f"{path.relative_to(package.parent.parent)}:{node.lineno}: {source} uses"
                           f" {aliases[node.value.id]}'s private {node.attr}")
    return out


def readme_folders(text: str) -> List[str]:
    """The folders the README's "Architecture" tree names (``name/`` entries of its code block)."""
    section = text.split("## Architecture", 1)[1]
    block = section.split("```", 2)[1]
    return re.findall(r"([A-Za-z_][\w]*)/(?=\s)", block)


# -- the tests ---------------------------------------------------------------------------------
def test_no_module_imports_a_higher_layer():
    assert upward_imports(PACKAGE) == []


def test_the_package_has_no_import_circle():
    found = circles(PACKAGE)
    assert found == [], "\n".join(line for circle in found for line in circle_lines(PACKAGE, circle))


def test_no_module_takes_another_modules_private_names():
    assert private_reach(PACKAGE) == []


def test_every_module_is_in_a_layer_and_under_the_size_limit():
    too_long = []
    for name, path in module_names(PACKAGE).items():
        layer_of(name)  # raises for a module of no layer
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert too_long == []


def test_the_readme_draws_every_folder_of_the_package_and_no_other():
    drawn = set(readme_folders(README.read_text()))
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    nested = {p.name for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders <= drawn, f"the README's Architecture tree lacks {sorted(folders - drawn)}"
    assert drawn <= nested | {PACKAGE.name, "src"}, f"the README draws folders that do not exist: {sorted(drawn - nested)}"


@pytest.fixture(scope="module")
def copy_of_package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("house") / "src" / "ptqcore"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "*.txt"))
    return root


def _plant(root: Path, module: str, line: str) -> int:
    path = root / module
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, text in enumerate(lines) if text.startswith("from __future__"))  # after the docstring
    lines.insert(at + 1, line + "\n")
    path.write_text("".join(lines))
    return at + 2


def test_a_planted_upward_import_fails_the_layer_test_and_names_its_line(copy_of_package):
    line = _plant(copy_of_package, "errors.py", "from ptqcore.suite import Suite  # planted")
    planted = set(upward_imports(copy_of_package)) - set(upward_imports(PACKAGE))
    assert planted == {f"src/ptqcore/errors.py:{line}: ptqcore.errors (core) imports ptqcore.suite (suite), a higher layer"}
    assert any("ptqcore.errors" in circle and "ptqcore.suite" in circle for circle in circles(copy_of_package))


def test_a_planted_private_reach_and_a_package_facade_import_are_seen(tmp_path):
    root = tmp_path / "src" / "ptqcore"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("from ptqcore.low.deep import _hidden\n")
    (root / "low" / "deep.py").write_text("import ptqcore.cli\n_hidden = 1\n")
    (root / "cli.py").write_text("import ptqcore.low.deep as deep\nvalue = deep._hidden\n")
    assert private_reach(root) == [
        "src/ptqcore/low/__init__.py:1: ptqcore.low imports ptqcore.low.deep's private _hidden",
        "src/ptqcore/cli.py:2: ptqcore.cli uses ptqcore.low.deep's private _hidden",
    ]
    # cli -> low.deep also runs low/__init__; deep -> cli closes the circle through both
    assert circles(root) == [["ptqcore.cli", "ptqcore.low", "ptqcore.low.deep"]]
