"""Where the run's JSON goes: ``--benchmark-json`` as pytest-benchmark hands it over, checked early.

pytest-benchmark up to 5.2.x opens the file itself (``argparse.FileType('wb')``) and writes into that
open file; 5.3 takes a path. Python 3.8 (JetPack 5) gets 4.0.0, so both forms are handled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest


def benchmark_json_takes_a_file() -> bool:
    """True where pytest-benchmark opens ``--benchmark-json`` itself (``argparse.FileType('wb')``,
    up to 5.2.x: pytest_benchmark/plugin.py) and writes to that open file; 5.3 takes a path."""
    from pytest_benchmark import __version__ as version

    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit()) < (5, 3)


def json_output_path(config) -> Optional[Path]:
    """The path of ``--benchmark-json``, whether pytest-benchmark gave a path or an open file."""
    value = config.getoption("benchmark_json", None)
    if value is None or value is False:
        return None
    return Path(value.name) if hasattr(value, "write") else Path(value)  # an open file, or a path (Path.name is no path)


def check_writable(path: Path, option: str) -> None:
    """A one-line usage error now, rather than a run whose results are lost at its very end."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise pytest.UsageError(f"{option} {path} is a directory; fix: give a file name, e.g. {path / 'run.json'}")
    if not folder.is_dir():
        raise pytest.UsageError(f"{option} {path}: folder {folder} does not exist; fix: create it or choose another path")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise pytest.UsageError(f"{option} {path} is not writable; fix: choose a path you can write to")
