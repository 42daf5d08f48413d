"""One TensorRT logger per process: every builder, ONNX parser and runtime ptqcore makes gets the same.

TensorRT keeps a single logger pointer while any builder, runtime or refitter exists: a new logger
passed to a later one is ignored ("TensorRT maintains only a single logger pointer at any given time,
so the existing value ... will be used instead", TensorRT 8.0's warning, NVIDIA/TensorRT issue
#1475), so a fresh logger per build would miss the errors of a build made while a runner is alive
and the failure would read "no error was logged". From 8.2 the API reference says each object uses
the logger it was created with and that the logger must be thread safe; one shared, locked logger
is right under both. A caller takes a :meth:`ProcessLogger.mark` before its work and reads
:meth:`ProcessLogger.errors_since` after it.
"""

from __future__ import annotations

import logging
import threading
from typing import Dict, List, Tuple

_log = logging.getLogger("ptqcore.backends.tensorrt")
_LOCK = threading.Lock()
#: What a failure says when no error reached ptqcore's logger.
NO_ERROR_LOGGED = ("no error reached ptqcore's logger (TensorRT keeps the first logger of the process: a runtime"
                   " another library made first holds it)")
#: id(tensorrt module) -> (the module, its logger): the real module once per process; each fake its own.
_LOGGERS: Dict[int, Tuple[object, object]] = {}


def process_logger(trt):
    """The process's ``trt.ILogger`` for the ``tensorrt`` module ``trt``: keeps errors (with a running
    count for :meth:`mark`) and forwards warnings to :mod:`logging`; made on first use."""
    with _LOCK:
        held = _LOGGERS.get(id(trt))
        if held is None or held[0] is not trt:
            held = (trt, _make(trt))
            _LOGGERS[id(trt)] = held
        return held[1]


def _make(trt):
    severity = trt.ILogger.Severity

    class ProcessLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self._errors: List[str] = []
            self._lock = threading.Lock()

        def log(self, level, message) -> None:
            if int(level) <= int(severity.ERROR):
                with self._lock:
                    self._errors.append(str(message))
                _log.error("TensorRT: %s", message)
            elif int(level) <= int(severity.WARNING):
                _log.warning("TensorRT: %s", message)

        @property
        def errors(self) -> List[str]:
            with self._lock:
                return list(self._errors)

        def mark(self) -> int:
            """Where the errors logged from now on start (pass it to :meth:`errors_since`)."""
            with self._lock:
                return len(self._errors)

        def errors_since(self, mark: int) -> List[str]:
            with self._lock:
                return list(self._errors[mark:])

    return ProcessLogger()
