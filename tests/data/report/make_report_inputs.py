"""Make the report test input tests/data/report/tiny.json from one real run of the suite.

The run (tiny model; the TensorRT cases are skipped with their reason on a machine without it)::

    PTQCORE_CACHE_DIR=/tmp/report-cache pytest benchmarks/ --ptq-models tiny \\
        --ptq-backends onnxruntime,tensorrt --ptq-compress-rounds 2 --ptq-telemetry-samples \\
        --benchmark-json /tmp/report-tiny.json -p no:cacheprovider -k "not overhead"
    python tests/data/report/make_report_inputs.py /tmp/report-tiny.json

keeps the run as it is except for size: each telemetry phase keeps at most :data:`MAX_SAMPLES`
evenly spaced raw samples (first and last included), and each benchmark entry's ``extra_info``
keeps only the fields that name its case (the records under ``output["ptqcore"]`` carry the
figures). The result is still pytest-benchmark JSON of the ptqcore suite.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MAX_SAMPLES = 12
KEPT_EXTRA = ("case", "measurement", "model", "precision", "backend", "device", "batch_size", "dataset")


def thin(samples: list, keep: int = MAX_SAMPLES) -> list:
    """At most ``keep`` evenly spaced items of ``samples``, the first and last included."""
    if len(samples) <= keep:
        return samples
    step = (len(samples) - 1) / (keep - 1)
    return [samples[round(i * step)] for i in range(keep)]


def trim(document: dict) -> dict:
    for record in document["ptqcore"]["records"]:
        for summary in (record.get("resources") or {}).values():
            if isinstance(summary.get("samples"), list):
                summary["samples"] = thin(summary["samples"])
    for entry in document["benchmarks"]:
        entry["extra_info"] = {k: v for k, v in entry.get("extra_info", {}).items() if k in KEPT_EXTRA}
        entry.get("stats", {}).pop("data", None)
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the --benchmark-json file of the run above")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).resolve().parent / "tiny.json")
    args = parser.parse_args()
    document = trim(json.loads(args.run.read_text(encoding="utf-8")))
    args.output.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
