"""The ``ptqcore`` console script.

``ptqcore compare BASELINE.json CANDIDATE.json [MORE_CANDIDATES...]`` judges each candidate run
against the baseline (see :mod:`ptqcore.results.compare`) and prints an aligned table, or Markdown with
``--markdown``; ``--json FILE`` also writes the verdicts as JSON. Limits come from the built-in
defaults, then the ``[compare]`` table of ``--thresholds FILE``, then the options.

``ptqcore report RUN.json [MORE_RUNS...] -o DIR [--markdown]`` writes DIR/index.html, DIR/report.md
and DIR/figures/ (see :mod:`ptqcore.results.report`); ``--markdown`` also prints the Markdown. It exits 0
when the report was written and 2 on unusable input, like ``compare``.

``ptqcore doctor`` says what a run here would measure (:mod:`ptqcore.doctor`) and exits 1 when it would
silently measure something else (TensorRT beside a torch that sees no GPU, a CPU onnxruntime shadowing
onnxruntime-gpu, a numpy torch cannot use).

Exit codes of ``compare``: 0 when no candidate regressed, 1 when any did, 2 when the input cannot be compared
(a message on stderr, never a traceback) or the command line is wrong; ``--json FILE`` never
overwrites one of the runs it compares (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from ptqcore import __version__
from ptqcore.errors import PtqError, error_line
from ptqcore.options.thresholds import CompareLimits, compare_value_problem, load_thresholds
from ptqcore.results.compare import compare_runs, load_runs
from ptqcore.results.render import comparisons_json, render_markdown, render_text

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
#: The limit options: each sets the CompareLimits field of the same name.
LIMIT_OPTIONS = {
    "latency_factor": "slower than this factor (and significant) is a latency regression",
    "p_value": "significance level of the Mann-Whitney U test on raw latency samples",
    "accuracy_pp": "a top-1 drop of more than this many percentage points is a regression",
    "size_factor": "an artifact larger than this factor is a regression",
    "build_factor": "export or build time above this factor is a regression",
    "energy_factor": "energy per inference above this factor is a regression",
}


def _limit(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        problem = compare_value_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptqcore", description="ptqcore: post-training quantization benchmarks")
    parser.add_argument("--version", action="version", version=f"ptqcore {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="compare benchmark runs and fail on regressions",
        description="Compare candidate runs (pytest --benchmark-json files of the ptqcore suite) with a baseline."
        " Exit code 0: no regression, 1: a regression, 2: unusable input.",
    )
    compare.add_argument("baseline", type=Path, metavar="BASELINE.json")
    compare.add_argument("candidates", type=Path, nargs="+", metavar="CANDIDATE.json")
    defaults = CompareLimits()
    for name, help_text in LIMIT_OPTIONS.items():
        compare.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_limit(name),
            default=None,
            metavar="X",
            help=f"{help_text} (default: {getattr(defaults, name):g}, or the thresholds file's [compare] table)",
        )
    compare.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML thresholds file; its [compare] table sets the limits the options do not",
    )
    compare.add_argument("--allow-incomplete", action="store_true",
                         help="compare runs that did not complete (interrupted, stopped early): the summary says so")
    compare.add_argument("--markdown", action="store_true", help="print Markdown (for a CI job summary)")
    compare.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the verdicts as JSON")
    compare.set_defaults(handler=run_compare)
    report = commands.add_parser(
        "report",
        help="write an HTML and Markdown report with figures from benchmark runs",
        description="Render the figures and tables of ptqcore runs (pytest --benchmark-json files) into a"
        " self-contained HTML page and Markdown; with several runs, the first is the baseline of the"
        " comparison. Needs matplotlib (pip install 'ptqcore[plot]'). Exit code 0: written, 2: unusable input.",
    )
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN.json")
    report.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="directory to write into")
    report.add_argument("--markdown", action="store_true", help="also print the Markdown report (CI job summary)")
    report.add_argument("--allow-incomplete", action="store_true",
                        help="report runs that did not complete (interrupted, stopped early): the report says so")
    report.set_defaults(handler=run_report)
    doctor = commands.add_parser(
        "doctor",
        help="say what a run here would measure, and what would make it measure something else",
        description="Where torch, numpy, ONNX Runtime and TensorRT come from, the board, JetPack, power mode, jtop,"
        " and the CPU's INT8 kernel self-test. Exit code 0: a run measures what its records say; 1: it would"
        " silently measure something else (each ERROR line names the fix).",
    )
    doctor.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                        help="read the board's files under DIR instead of / (for checking a copied image)")
    doctor.add_argument("--no-kernel-probe", dest="kernel_probe", action="store_false",
                        help="skip the INT8 kernel self-test (about 50 ms of ONNX Runtime)")
    doctor.set_defaults(handler=run_doctor)
    return parser


def run_doctor(args: argparse.Namespace, out) -> int:
    """The ``doctor`` subcommand (:mod:`ptqcore.doctor`): 0 when a run measures what it says, else 1."""
    from ptqcore.doctor import findings, gather, render

    text, status = render(findings(gather(args.root, args.kernel_probe)))
    out.write(text + "\n")
    return status


def run_compare(args: argparse.Namespace, out) -> int:
    """The ``compare`` subcommand; raises :class:`~ptqcore.errors.PtqError` for unusable input."""
    if args.json is not None and any(_same_file(args.json, run) for run in [args.baseline, *args.candidates]):
        raise PtqError(f"--json {args.json} is one of the runs being compared", "pass another file to --json")
    limits = load_thresholds(args.thresholds, option="--thresholds").compare
    limits = replace(limits, **{name: getattr(args, name) for name in LIMIT_OPTIONS if getattr(args, name) is not None})
    baseline, *candidates = load_runs([args.baseline, *args.candidates], args.allow_incomplete)
    comparisons = [compare_runs(baseline, candidate, limits) for candidate in candidates]
    if args.json is not None:
        try:
            args.json.write_text(comparisons_json(comparisons), encoding="utf-8")
        except OSError as err:
            raise PtqError(f"cannot write {args.json} ({err.strerror})", "pass a writable --json path") from None
    render = render_markdown if args.markdown else render_text
    out.write("\n".join(render(comparison) for comparison in comparisons))
    return EXIT_REGRESSION if any(comparison.regressed for comparison in comparisons) else EXIT_OK


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (the same inode, or the same resolved path)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except (OSError, RuntimeError):  # an unresolvable path (a symlink loop) is no input of ours
        return False


def run_report(args: argparse.Namespace, out) -> int:
    """The ``report`` subcommand; raises :class:`~ptqcore.errors.PtqError` for unusable input."""
    from ptqcore.results.report import write_report  # imports matplotlib only when it writes (a PtqError without it)

    report = write_report(args.runs, args.output, args.allow_incomplete)
    if args.markdown:
        out.write(report.markdown)
    else:
        out.write(f"wrote {report.directory / 'index.html'} and report.md ({len(report.figures)} figures)\n")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    The console script's wrapper passes the return value to ``sys.exit``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error (2) or help/version (0)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_UNUSABLE
    try:
        return args.handler(args, sys.stdout)
    except PtqError as error:
        message = str(error)
    except (OSError, UnicodeError, RecursionError) as error:  # a reader or writer that missed one
        message = f"{error_line(error)}; fix: check the input files and the output path"
    print(f"ptqcore {args.command}: error: {message}", file=sys.stderr)
    return EXIT_UNUSABLE
