"""Registers the ptqcore pytest plugin (options, case matrix, records) for the benchmark suite.

Only ``pytest benchmarks/`` loads it: ``pytest tests/`` runs without the plugin (its tests that
need it start pytest with ``-p ptqcore.plugin``). A benchmark folder of your own registers it the
same way, or with ``pytest -p ptqcore.plugin``.
"""

pytest_plugins = ["ptqcore.plugin"]
