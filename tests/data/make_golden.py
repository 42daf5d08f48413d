"""Make the golden comparison files in tests/data/golden/ from one real run of the suite.

The run (tiny model, raw samples kept)::

    PTQCORE_CACHE_DIR=/tmp/golden-cache pytest benchmarks/ --ptq-models tiny --ptq-compress-rounds 2 \\
        --ptq-latency-min-time 0.2 --ptq-latency-min-rounds 30 --benchmark-save-data \\
        --benchmark-json /tmp/golden-base.json -p no:cacheprovider -k "not overhead"
    python tests/data/make_golden.py /tmp/golden-base.json

writes three files, each a valid pytest-benchmark JSON of the ptqcore suite:

``baseline.json`` and ``noise.json``
    The run's raw latency samples split in two interleaved halves (even rounds to the baseline,
    odd rounds to the candidate), each thinned to at most :data:`MAX_SAMPLES` evenly spaced
    rounds; the pytest-benchmark stats and the record's ``latency_ms`` / ``throughput_ips`` are
    recomputed from the samples kept. The two files differ only by sampling noise. (A second
    real run on the shared 2-core machine where these files were made came out 1.1-1.6x slower
    across all ONNX Runtime cases because of other jobs on the machine: a real shift, which
    ``ptqcore compare`` rightly flags, not noise.) Compression figures come from two rounds
    per case and are the same in both files: two rounds cannot be split into two samples.
``planted.json``
    ``noise.json`` with three planted changes: every raw latency sample of :data:`SLOW_CASE`
    times :data:`SLOWDOWN` (stats and record recomputed), the top-1 of :data:`ACCURACY_CASE`
    down by :data:`ACCURACY_DROP_PP` percentage points, and :data:`FAILING_CASE` failed with a
    problem line. ``ptqcore compare baseline.json planted.json`` must flag exactly these.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Iterator, List

from pytest_benchmark.stats import Stats

from ptqcore.measure.stats import LatencyStats

MAX_SAMPLES = 60
SLOW_CASE = "tiny_cnn-int8-onnxruntime-cpu-b1"
SLOWDOWN = 1.5
ACCURACY_CASE = "tiny_cnn-fp16-onnxruntime-cpu-b1"
ACCURACY_DROP_PP = 3.0
FAILING_CASE = "tiny_cnn-fp32-onnxruntime-cpu-b1"
FAILING_PROBLEM = "test_latency (call): BuildError: planted by tests/data/make_golden.py; fix: none, it is planted"
OUT = Path(__file__).resolve().parent / "golden"


def records_of(document: dict, case: str) -> Iterator[dict]:
    """Every copy of ``case``'s record: in ``output["ptqcore"]["records"]`` and in each entry's ``extra_info``."""
    for record in document["ptqcore"]["records"]:
        if record["case"] == case:
            yield record
    for entry in document["benchmarks"]:
        if entry["extra_info"].get("case") == case:
            yield entry["extra_info"]


def thin(samples: List[float], limit: int = MAX_SAMPLES) -> List[float]:
    """At most ``limit`` samples, evenly spaced over the run (first and last kept)."""
    if len(samples) <= limit:
        return list(samples)
    step = (len(samples) - 1) / (limit - 1)
    return [samples[round(i * step)] for i in range(limit)]


def set_samples(document: dict, entry: dict, samples: List[float]) -> None:
    """Give a benchmark entry new raw samples and recompute what depends on them."""
    stats = Stats()
    for value in samples:
        stats.update(value)
    entry["stats"] = {**entry["stats"], **stats.as_dict(), "data": list(samples)}
    if not entry["extra_info"].get("measurement", "").startswith("latency"):
        return
    case = entry["extra_info"]["case"]
    batch = entry["extra_info"]["batch_size"]
    latency = LatencyStats.from_seconds(samples, batch)
    for record in records_of(document, case):
        record.update(latency_ms=latency.summary(), throughput_ips=latency.throughput_ips, latency_rounds=latency.n)


def half(run: dict, parity: int) -> dict:
    """The run with every latency entry's samples reduced to rounds ``parity``, ``parity + 2``, ..., thinned."""
    document = copy.deepcopy(run)
    for entry in document["benchmarks"]:
        data = entry["stats"]["data"]
        if entry["extra_info"].get("measurement", "").startswith("latency"):
            set_samples(document, entry, thin(data[parity::2]))
    return document


def plant(noise: dict) -> dict:
    document = copy.deepcopy(noise)
    for entry in document["benchmarks"]:
        if entry["extra_info"].get("case") == SLOW_CASE and entry["extra_info"]["measurement"].startswith("latency"):
            set_samples(document, entry, [value * SLOWDOWN for value in entry["stats"]["data"]])
    for record in records_of(document, SLOW_CASE):
        record["first_inference_ms"] *= SLOWDOWN
    for record in records_of(document, ACCURACY_CASE):
        record["top1"] -= ACCURACY_DROP_PP / 100.0
        record["accuracy_drop_pp"] += ACCURACY_DROP_PP
    for record in records_of(document, FAILING_CASE):
        record["status"] = "failed"
        record["problems"] = [FAILING_PROBLEM]
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="pytest-benchmark JSON of the suite, with --benchmark-save-data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    run = json.loads(args.run.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    noise = half(run, 1)
    for name, document in (("baseline", half(run, 0)), ("noise", noise), ("planted", plant(noise))):
        (args.out / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.out / name}.json")


if __name__ == "__main__":
    main()
