"""Loaded by every Python process started with this folder on PYTHONPATH (the profile benchmark does):
with BENCH_PROBE_DIR set, it counts CPU, SQL and Redis per stage (bench/probe.py)."""
import os

if os.environ.get("BENCH_PROBE_DIR"):
    from bench import probe

    probe.install()
