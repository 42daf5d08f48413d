"""Errors that ptqcore reports to its users.

Every error raised for bad input or a missing prerequisite is a :class:`PtqError`: its message is
one line that names the problem and the fix, so the suite can show it as-is.
"""

from __future__ import annotations


class PtqError(Exception):
    """A problem the user can fix. ``str(err)`` is ``"<problem>; fix: <fix>"`` on one line."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = " ".join(str(problem).split())
        self.fix = " ".join(str(fix).split())
        super().__init__(f"{self.problem}; fix: {self.fix}")


class UsageError(PtqError):
    """An option names something that does not exist (model, precision, backend, ...)."""


class DataError(PtqError):
    """A data set is missing, unreadable or of the wrong shape."""


class ModelLoadError(PtqError):
    """A model file, checkpoint or weights cannot be loaded."""


class ThresholdsError(PtqError):
    """The thresholds file cannot be read or says something invalid."""


class BuildError(PtqError):
    """Export, conversion or quantization failed for one case."""


def error_line(err: BaseException) -> str:
    """``"TypeName: message"`` of any exception on one line, whole: for the problem of a :class:`PtqError`.

    Line breaks and runs of whitespace become single spaces; nothing is cut, so the message never
    stops mid-sentence (use this instead of ``str(err).splitlines()[0][:200]``).
    """
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
