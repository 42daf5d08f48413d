"""The on-disk artifact store: content-keyed, atomic, verified, one builder per entry.

``ArtifactStore.get_or_build(kind, inputs, filename, build)`` returns the path of a file that
``build`` once wrote. The key is a hash of ``inputs`` (everything the artifact depends on: source
hashes, options, library versions), so a change in any of them builds a new entry. An entry is a
folder ``ROOT/KIND/KEY/`` holding the file and ``manifest.json`` (kind, key, file name, size,
SHA-256, inputs, time; written with sorted keys, so a rebuild writes the same bytes but the
times).

* Atomic: ``build`` writes into a private temporary folder that is renamed into place only when
  it returned and the manifest is written; an interrupted build leaves no entry behind (its
  temporary folder is removed, or pruned by a later run if the process was killed). A build that
  fails on a full disk raises one :class:`~ptqcore.errors.PtqError` line ("no space left on
  device: FOLDER (N MB free ...)"), whatever the writer said, and leaves nothing behind either.
* Writable: :meth:`ArtifactStore.check_writable` refuses, before any work, a folder that cannot be
  created or written (a read-only mount, no permission).
* Verified: a hit is used only if its manifest is a JSON object whose ``kind``, ``key`` and
  ``file`` name this very entry and whose ``size_bytes`` and ``sha256`` match the file; anything
  else is reported (with the reason), removed and built again.
* One builder: a build holds an exclusive lock on ``ROOT/KIND/KEY.lock`` (``fcntl.flock``; where
  there is no ``fcntl``, an ``O_EXCL`` lock file). A second run that wants the same entry waits,
  then reuses the first run's entry and says ``reused ... (built by another run)``.
* Loaded: an entry can verify and still fail to load (written by a library that changed since).
  :meth:`ArtifactStore.load_or_build` loads it and, when a *reused* entry fails to load, discards
  it and builds it once more; :meth:`ArtifactStore.discard` does the discarding for callers that
  load on their own. Every entry of the suite is read through ``load_or_build`` (the pipeline's
  steps with :func:`ptqcore.pipeline.readable`, the reference models, the sensitivity rankings and
  the int8-mixed searches with their own readers), never taken as it verified.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Tuple, TypeVar

from ptqcore.errors import PtqError, UsageError, error_line

try:  # pragma: no cover - which branch runs depends on the platform
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

MANIFEST = "manifest.json"
#: What a failed build writes to tell a full disk from other failures: C++ writers do not say ENOSPC
#: (torch.save said "unexpected pos 704 vs 598" on a full tmpfs, torch 2.14.1; issue #23 saw
#: "basic_ios::clear: iostream error").
DISK_PROBE_BYTES = 1 << 20
STALE_TEMP_SECONDS = 24 * 3600
#: Without fcntl, a lock file older than this is taken to be left by a killed process.
STALE_LOCK_SECONDS = 6 * 3600
LOCK_POLL_SECONDS = 0.05
T = TypeVar("T")


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
    """The SHA-256 of the bytes of the file at ``path`` (hex)."""
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
    """An :class:`Entry` for a file outside the store (a user's model file), hashed as it is.

    Its ``key`` is the first 20 hex digits of its SHA-256: like every store key, it changes
    when the file's bytes change (and only then), whatever the file is called.
    """
    path = Path(path)
    digest = file_sha256(path)
    return Entry(path, digest[:20], digest, path.stat().st_size, reused=True)


def manifest_problem(manifest, kind: str, key: str, filename: str, artifact: Path) -> Optional[str]:
    """Why ``manifest`` (parsed JSON) does not vouch for ``artifact`` as entry ``kind/key``; None if it does."""
    if not isinstance(manifest, dict):
        return f"manifest is a JSON {type(manifest).__name__}, not an object"
    for field, expected in (("kind", kind), ("key", key), ("file", filename)):
        if manifest.get(field) != expected:
            return f"manifest {field} is {manifest.get(field)!r}, not {expected!r}"
    size, digest = manifest.get("size_bytes"), manifest.get("sha256")
    if isinstance(size, bool) or not isinstance(size, int) or not isinstance(digest, str):
        return "manifest has no size_bytes / sha256"
    if not artifact.is_file():
        return f"missing {filename}"
    if artifact.stat().st_size != size:
        return "size differs from manifest"
    if file_sha256(artifact) != digest:
        return "SHA-256 differs from manifest"
    return None


class ArtifactStore:
    """See the module docstring. ``report`` receives one-line progress messages."""

    def __init__(self, root: Path, report: Optional[Callable[[str], None]] = None) -> None:
        self.root = Path(root).expanduser()
        self.report = report or (lambda message: None)

    def check_writable(self) -> None:
        """:class:`~ptqcore.errors.UsageError` now (before any work) when the store's folder cannot be
        created or written: a missing parent that cannot be made, a read-only mount, no permission."""
        where = f"--ptq-cache-dir {self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"{where} cannot be created ({err.strerror or error_line(err)})",
                             "point --ptq-cache-dir (or $PTQCORE_CACHE_DIR) at a folder you can write to") from None
        probe = self.root / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with open(probe, "xb") as handle:
                handle.write(b"ptqcore")
        except OSError as err:
            raise UsageError(f"{where} is not writable ({err.strerror or error_line(err)})",
                             "point --ptq-cache-dir (or $PTQCORE_CACHE_DIR) at a folder you can write to") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

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
        nothing in the store. At most one process builds a given entry at a time; the others
        wait for it and reuse what it built.
        """
        key = stable_key({"kind": kind, **inputs})
        folder = self.root / kind / key
        label = label or f"{kind} {key}"
        entry, _ = self._verified(kind, key, filename)
        if entry is not None:
            self.report(f"reused cached {label} ({entry.path})")
            return entry
        with self._lock(kind, key):
            found, again = self._verified(kind, key, filename)
            if found is not None:  # another run built it while this one waited for the lock
                self.report(f"reused cached {label} (built by another run) ({found.path})")
                return found
            if again is not None:
                self.report(f"cache entry {folder} is corrupted ({again}): rebuilding {label}")
                self._remove(folder)
            return self._build(kind, key, inputs, filename, build, label)

    def load_or_build(
        self,
        kind: str,
        inputs: Mapping,
        filename: str,
        build: Callable[[Path], None],
        load: Callable[[Path], T],
        label: str = "",
    ) -> Tuple[Entry, T]:
        """:meth:`get_or_build`, then ``load(entry.path)``; returns ``(entry, loaded value)``.

        When a reused entry fails to load (``load`` raises), the entry is discarded with a report
        line and built once more; a fresh entry that fails to load raises ``load``'s error.
        """
        entry = self.get_or_build(kind, inputs, filename, build, label)
        try:
            return entry, load(entry.path)
        except Exception as err:
            if not entry.reused:
                raise
            self.discard(entry, f"it verified but did not load: {error_line(err)}")
        entry = self.get_or_build(kind, inputs, filename, build, label)
        return entry, load(entry.path)

    def discard(self, entry: Entry, why: str = "the caller discarded it") -> None:
        """Remove ``entry`` from the store (under its lock) so the next request builds it again.

        Only entries of this store can be discarded; :func:`entry_for_file` entries raise
        ValueError (a user's file is never deleted).
        """
        folder = Path(entry.path).parent
        kind = folder.parent.name
        if folder.parent.parent != self.root or folder.name != entry.key:
            raise ValueError(f"{entry.path} is not an entry of the store at {self.root}")
        with self._lock(kind, entry.key):
            self.report(f"discarding cache entry {folder} ({why}): it will be rebuilt")
            self._remove(folder)

    # -- internals -------------------------------------------------------------------------------
    def _verified(self, kind: str, key: str, filename: str) -> Tuple[Optional[Entry], Optional[str]]:
        """(the entry, None) when ``kind/key`` is sound, (None, why not) when it is present but
        not sound, (None, None) when it is absent."""
        folder = self.root / kind / key
        if not os.path.lexists(folder):
            return None, None
        if not folder.is_dir():
            return None, "not a folder"
        try:
            with open(folder / MANIFEST, encoding="utf-8") as handle:
                manifest = json.load(handle)
        except FileNotFoundError:
            return None, "no manifest"
        except (OSError, ValueError, RecursionError) as err:
            return None, f"unreadable manifest: {error_line(err)}"
        problem = manifest_problem(manifest, kind, key, filename, folder / filename)
        if problem is not None:
            return None, problem
        return Entry(folder / filename, key, manifest["sha256"], manifest["size_bytes"], True), None

    def _build(self, kind, key, inputs, filename, build, label) -> Entry:
        parent = self.root / kind
        self._prune_stale_temps(parent)
        temp = parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            temp.mkdir()
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
            (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
            final = parent / key
            os.rename(temp, final)  # the lock is held and the old entry removed: nothing is in the way
            self.report(f"built {label} in {manifest['build_seconds']:.1f} s ({final / filename})")
            return Entry(final / filename, key, manifest["sha256"], manifest["size_bytes"], reused=False)
        except Exception as err:
            if _disk_is_full(err, temp):
                raise _no_space(parent, _bytes_under(temp)) from None
            raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold the build lock of entry ``kind/key`` (blocking until it is free)."""
        parent = self.root / kind
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / f"{key}.lock"
        if fcntl is not None:
            with open(path, "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return
        with _exclusive_file(path):  # pragma: no cover - platforms without fcntl
            yield

    @staticmethod
    def _remove(folder: Path) -> None:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
        elif os.path.lexists(folder):
            folder.unlink()

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


def _disk_is_full(err: BaseException, temp: Path) -> bool:
    """Whether a build failed because the disk under ``temp`` is full: ENOSPC said outright, or
    (for writers that hide it) a :data:`DISK_PROBE_BYTES` write into ``temp`` failing with ENOSPC."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    try:
        with open(temp / ".disk-probe", "wb") as handle:
            handle.write(b"\0" * DISK_PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as probe_err:
        return probe_err.errno == errno.ENOSPC
    finally:
        with contextlib.suppress(OSError):
            (temp / ".disk-probe").unlink()
    return False


def _bytes_under(folder: Path) -> int:
    """The bytes of the files under ``folder`` (what a failed build had written), 0 where unreadable."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


def _no_space(folder: Path, written: int) -> PtqError:
    """The one-line error of a full disk under ``folder``: what is free, what the build had written."""
    try:
        free_mb = shutil.disk_usage(folder).free / 1e6
    except OSError:
        free_mb = float("nan")
    need_mb = max(1, int(written / 1e6 + 1))
    wrote = f"; the build had written {written / 1e6:.1f} MB when it stopped" if written else ""
    return PtqError(f"no space left on device: {folder} ({free_mb:.1f} MB free{wrote}; nothing of it was kept)",
                    f"free at least {need_mb} MB there or point --ptq-cache-dir elsewhere")


@contextlib.contextmanager
def _exclusive_file(path: Path) -> Iterator[None]:
    """A lock where ``fcntl`` is missing: the file ``path`` exists while it is held.

    A lock file older than :data:`STALE_LOCK_SECONDS` is taken to be left by a killed process.
    """
    while True:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime > STALE_LOCK_SECONDS:
                    path.unlink()
                    continue
            except OSError:
                continue
            time.sleep(LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
