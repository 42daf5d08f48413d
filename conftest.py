"""Registers the ptqcore pytest plugin (options, case matrix, records) for this repository."""

pytest_plugins = ["ptqcore.plugin"]
