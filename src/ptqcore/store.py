"""The on-disk artifact store: content-keyed, atomic, verified.

``ArtifactStore.get_or_build(kind, inputs, filename, build)`` returns the path of a file that
``build`` once wrote. The key is a hash of ``inputs`` (everything the artifact depends on: source
hashes, options, library versions), so a change in any of them builds a new entry. An entry is a
folder ``ROOT/KIND/KEY/`` holding the file and ``manifest.json`` (inputs, size, SHA-256, time).

* Atomic: ``build`` writes into a private temporary folder that is renamed into place only when
  it returned and the manifest is written; an interrupted build leaves no entry behind (its
  temporary folder is removed, or pruned by a later run if the process was killed).
* Verified: a hit is used only if its manifest parses and the file's size and SHA-256 match;
  otherwise the entry is reported as corrupted, removed and built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

MANIFEST = "manifest.json"
STALE_TEMP_SECONDS = 24 * 3600


def default_cache_dir() -> Path:
    """``$PTQCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptqcore``, else ``~/.cache/ptqcore``."""
    if os.environ.get("PTQCORE_CACHE_DIR"):
        return Path(os.environ["PTQCORE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ptqcore"


def stable_key(inputs: Mapping) -> str:
    """A 20-hex-digit key that depends on the content of ``inputs`` only (not on dict order)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """A usable store entry: the artifact ``path``, its key and digest, and whether it was reused."""

    path: Path
    key: str
    sha256: str
    size_bytes: int
    reused: bool


def entry_for_file(path: Path) -> Entry:
    """An :class:`Entry` for a file outside the store (a user's model file), hashed as it is."""
    path = Path(path)
    return Entry(path, "", file_sha256(path), path.stat().st_size, reused=True)


class ArtifactStore:
    """See the module docstring. ``report`` receives one-line progress messages."""

    def __init__(self, root: Path, report: Optional[Callable[[str], None]] = None) -> None:
        self.root = Path(root).expanduser()
        self.report = report or (lambda message: None)

    def get_or_build(
        self,
        kind: str,
        inputs: Mapping,
        filename: str,
        build: Callable[[Path], None],
        label: str = "",
    ) -> Entry:
        """The entry for ``(kind, inputs)``, reusing a verified one or calling ``build(path)``.

        ``build`` must write the artifact at the path it is given (and may write other files
        beside it, which are kept in the entry). Exceptions from ``build`` propagate and leave
        nothing in the store.
        """
        key = stable_key({"kind": kind, **inputs})
        folder = self.root / kind / key
        label = label or f"{kind} {key}"
        if folder.exists():
            problem = self._problem(folder, filename)
            if problem is None:
                entry = self._entry(folder, filename, key, reused=True)
                self.report(f"reused cached {label} ({entry.path})")
                return entry
            self.report(f"cache entry {folder} is corrupted ({problem}): rebuilding {label}")
            shutil.rmtree(folder, ignore_errors=True)
        return self._build(kind, key, inputs, filename, build, label)

    def _build(self, kind, key, inputs, filename, build, label) -> Entry:
        parent = self.root / kind
        parent.mkdir(parents=True, exist_ok=True)
        self._prune_stale_temps(parent)
        temp = parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        try:
            started = time.perf_counter()
            build(temp / filename)
            artifact = temp / filename
            if not artifact.is_file():
                raise RuntimeError(f"building {label} returned without writing {filename}")
            manifest = {
                "kind": kind,
                "key": key,
                "file": filename,
                "size_bytes": artifact.stat().st_size,
                "sha256": file_sha256(artifact),
                "inputs": dict(inputs),
                "created_unix": time.time(),
                "build_seconds": time.perf_counter() - started,
            }
            (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            final = parent / key
            try:
                os.rename(temp, final)
            except OSError:
                if not final.exists():
                    raise
                # another process finished the same entry first: keep theirs if it is sound
                if self._problem(final, filename) is not None:
                    raise
            self.report(f"built {label} in {manifest['build_seconds']:.1f} s ({final / filename})")
            return self._entry(final, filename, key, reused=False)
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    @staticmethod
    def _problem(folder: Path, filename: str) -> Optional[str]:
        """Why the entry in ``folder`` cannot be trusted, or None if it can."""
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except FileNotFoundError:
            return "no manifest"
        except (OSError, ValueError) as err:
            return f"unreadable manifest: {err}"
        artifact = folder / filename
        if manifest.get("file") != filename or not artifact.is_file():
            return f"missing {filename}"
        if artifact.stat().st_size != manifest.get("size_bytes"):
            return "size differs from manifest"
        if file_sha256(artifact) != manifest.get("sha256"):
            return "SHA-256 differs from manifest"
        return None

    @staticmethod
    def _entry(folder: Path, filename: str, key: str, reused: bool) -> Entry:
        manifest = json.loads((folder / MANIFEST).read_text())
        return Entry(folder / filename, key, manifest["sha256"], manifest["size_bytes"], reused)

    @staticmethod
    def _prune_stale_temps(parent: Path) -> None:
        """Remove temporary folders left by processes that were killed mid-build long ago."""
        now = time.time()
        for temp in parent.glob(".tmp-*"):
            try:
                if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                    shutil.rmtree(temp, ignore_errors=True)
            except OSError:
                pass
