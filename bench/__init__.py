"""The benchmark of issue 7: `python -m bench.run [--quick]` (see bench/run.py and RESULTS.md).

It drives the real bot through the end-to-end harness (tests/fakediscord.py, tests/e2e/live.py)
against the provider simulator. It is not a test: it prints figures and compares them with the
issue's targets, it asserts nothing.
"""
