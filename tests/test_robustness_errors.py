"""Issue #10 (errors): every PtqError message is one line, problem and fix, never cut short."""

import pytest

from ptqcore.errors import BuildError, DataError, ModelLoadError, PtqError, ThresholdsError, UsageError, error_line
from ptqcore.results.compare import CompareError

LONG = "the graph has an operator this backend does not know, " * 20 + "and this is the end of the sentence."


@pytest.mark.parametrize("kind", [PtqError, UsageError, DataError, ModelLoadError, ThresholdsError, BuildError,
                                  CompareError])
def test_messages_are_one_whole_line(kind):
    error = kind(f"first line\n\t{LONG}\r\nlast\x0bline\u2028", "do\nthis")
    text = str(error)
    assert "\n" not in text and "\r" not in text and "\x0b" not in text and "\u2028" not in text
    assert text.endswith("last line; fix: do this")
    assert "and this is the end of the sentence." in text and len(text) > 1000


def test_error_line_keeps_the_whole_message_of_any_exception():
    inner = RuntimeError(f"Error(s) in loading state_dict:\n\t{LONG}")
    line = error_line(inner)
    assert line.startswith("RuntimeError: Error(s) in loading state_dict: the graph") and "\n" not in line
    assert line.endswith("and this is the end of the sentence.")
    assert error_line(KeyError()) == "KeyError"
    wrapped = ModelLoadError(f"model.pt does not load ({error_line(inner)})", "re-export it")
    assert "end of the sentence.)" in str(wrapped)
