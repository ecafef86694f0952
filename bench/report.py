"""The tables of a results file: `python -m bench.report [bench/results/latest.json]`.

- the headline table (issue 13's figures, SQLite beside PostgreSQL, each with its target and by how
  much it is met or missed),
- the detailed table (every figure beside its reference from the same run),
- the profile table per database (bench/b_profile.py),
all as Markdown, ready for README.md and bench/README.md. `python -m bench.run` prints them too.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DBS = ("sqlite", "postgresql")
# CPU accounting names that are not Celery worker lines (bench/cpu.py)
NOT_WORKERS = ("listener", "beat", "web", "redis", "postgres", "bench", "machine", "others")


def fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def _get(d, *path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _margin(value, target: float, higher_is_better: bool, unit: str) -> str:
    if value is None:
        return "missed (not every message served in time)"
    gap = value - target if higher_is_better else target - value
    return f"{'met' if gap >= 0 else 'missed'} by {fmt(abs(gap))}{unit or 'x'}"


def _row(figure: str, name: str, cells: dict, target: str = "", judged: dict | None = None, bound: float | None = None,
         higher: bool = True, unit: str = "") -> dict:
    return {"figure": figure, "name": name, "cells": cells, "target": target, "judged": judged, "bound": bound,
            "higher": higher, "unit": unit}


def _headline_rows(b: dict) -> list[dict]:
    def per_db(name, *path):
        return {db: _get(b.get(name, {}), db, *path) for db in DBS}

    def text(values: dict, unit: str = "") -> dict:
        return {db: None if v is None else v if isinstance(v, str) else fmt(v, unit) for db, v in values.items()}

    fire, e2e, scale = per_db("fire"), per_db("e2e"), per_db("scale")
    n = next((_get(f, "settings", "tasks_waiting") for f in fire.values() if f), 1500)
    ratio, mixed = per_db("fire", "ratio_to_noop"), per_db("e2e", "mixed", "pooled_ms", "p99")
    intake, timers = per_db("intake", "ratio"), per_db("timers", "load", "first_send_late_s", "p99")
    ten_k = per_db("e2e", "ten_k", "latency_ms", "p99")
    return [
        _row(f"fired messages/s (message in -> last send frame out), {fmt(n)} waiting", "fire",
             text(per_db("fire", "fire", "per_second"))),
        _row("Celery no-op tasks/s, same broker and worker processes", "fire",
             text(per_db("fire", "reference_noop", "per_second"))),
        _row("fired / no-op", "fire", text(ratio, "x"), ">= 0.4x", ratio, 0.4, True, "x"),
        _row("CPU ms per fired message: workers / listener / Redis / PostgreSQL", "fire",
             {db: _cpu_text(_get(f, "fire", "cpu_ms_per_fired")) for db, f in fire.items()}),
        _row("other processes on the machine during the burst (share of one CPU; ~0 when quiet)", "fire",
             text(per_db("fire", "fire", "cpu_share_of_a_core", "others"))),
        _row("callbacks accepted by the last send / in all (2 per task)", "fire",
             {db: _pair(_get(f, "fire", "callbacks_by_last_send"), _get(f, "fire", "callbacks_in_all"))
              for db, f in fire.items()}),
        _row("e2e p99, 100 firing + 100 non-firing msg/s (all runs pooled)", "e2e", text(mixed, " ms"), "<= 50 ms",
             mixed, 50.0, False, " ms"),
        _row("e2e p99 of each run: min / median / max (ms)", "e2e",
             {db: _triple(_get(e, "mixed", "p99_over_runs")) for db, e in e2e.items()}),
        _row("e2e p50 / p99 at 10 msg/s, light (ms)", "e2e",
             {db: _latency_pair(_get(e, "light")) for db, e in e2e.items()}),
        _row("intake req/s / bare Flask+SQLAlchemy insert, same gunicorn settings", "intake", text(intake, "x"),
             ">= 0.6x", intake, 0.6, True, "x"),
        _row("500 time_reach due in the same second: p99 first send after due", "timers", text(timers, " s"), "<= 1 s",
             timers, 1.0, False, " s"),
        _row("10,000 customers waiting, each speaking once a minute: e2e p50 / p99 (ms)", "e2e",
             {db: _latency_pair(_get(e, "ten_k")) for db, e in e2e.items()},
             "p99 <= 100 ms", ten_k, 100.0, False, " ms"),
        _row("10,000 customers: CPU ms per fired message: workers / listener / Redis / PostgreSQL", "e2e",
             {db: _cpu_text(_get(e, "ten_k", "cpu_ms_per_fired")) for db, e in e2e.items()}),
        _row("scale-out: fired/s with 1 -> 2 workers on separate CPUs (gain)", "scale",
             {db: _scale_text(s) for db, s in scale.items()}),
    ]


def _scale_text(s: dict | None) -> str | None:
    if not s:
        return None
    return f"{fmt(_get(s, 'one', 'per_second'))} -> {fmt(_get(s, 'two', 'per_second'))} ({fmt(_get(s, 'gain'))}x)"


def _cpu_text(ms: dict | None) -> str | None:
    if not ms:
        return None
    workers = sum(v for k, v in ms.items() if k not in NOT_WORKERS)
    parts = [workers, ms.get("listener", 0.0), ms.get("redis", 0.0)]
    postgres = f" / {fmt(float(ms['postgres']))}" if "postgres" in ms else " / -"
    return " / ".join(fmt(float(x)) for x in parts) + postgres


def _latency_pair(phase: dict | None) -> str | None:
    """p50 / p99 of an e2e phase; a percentile among the messages not served in time prints "> bound"."""
    if not phase:
        return None
    bound = f"> {phase['drain_bound_s']:g} s"
    return " / ".join(fmt(v) if v is not None else bound for v in (phase["latency_ms"][p] for p in ("p50", "p99")))


def _pair(a, b) -> str | None:
    return None if a is None and b is None else f"{fmt(a)} / {fmt(b)}"


def _triple(d: dict | None) -> str | None:
    return None if not d else f"{fmt(d.get('min'))} / {fmt(d.get('median'))} / {fmt(d.get('max'))}"


def headline(results: dict) -> str:
    """Issue 13's table: each figure on SQLite and PostgreSQL, its target, and by how much it is met."""
    b = results.get("benchmarks", {})
    lines = ["| figure | SQLite | PostgreSQL | target | |", "|---|---|---|---|---|"]
    for row in _headline_rows(b):
        ran = [db for db in DBS if isinstance(_get(b, row["name"], db), dict)]
        verdict = ""
        if row["bound"] is not None:
            verdict = "; ".join(f"{db}: {_margin(row['judged'][db], row['bound'], row['higher'], row['unit'])}"
                                for db in ran)
        cells = [row["cells"].get(db) or ("-" if db not in ran else "not measured") for db in DBS]
        lines.append(f"| {row['figure']} | {cells[0]} | {cells[1]} | {row['target']} | {verdict} |")
    scale = [(db, _get(b, "scale", db, "next_bottleneck")) for db in DBS if _get(b, "scale", db, "next_bottleneck")]
    if scale:
        lines.append("")
        lines += [f"Next bottleneck with two workers ({db}): {what}." for db, what in scale]
    return "\n".join(lines)


def profiles(results: dict) -> str:
    from bench import b_profile

    out = []
    for db in DBS:
        res = _get(results, "benchmarks", "profile", db)
        if not (isinstance(res, dict) and res.get("burst")):
            continue
        burst, steady = res["burst"], res["steady"]
        out.append(f"Per fired message, {db}, a burst ({burst['fired']:,} fired at {fmt(burst.get('per_second'))}/s, "
                   f"tasks created through web; probe on, so CPU is inflated):\n\n{b_profile.markdown(res, 'burst')}")
        out.append(f"Per fired message, {db}, a steady {fmt(res['settings']['steady_rate'])} firing messages/s, one "
                   f"frame at a time ({steady['fired']:,} fired; p99 {fmt(_get(steady, 'latency_ms', 'p99'))} ms):"
                   f"\n\n{b_profile.markdown(res, 'steady')}")
    return "\n\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(Path(__file__).with_name("results") / "latest.json"))
    args = parser.parse_args(argv)
    from bench import table

    results = json.loads(Path(args.results).read_text())
    print(headline(results), end="\n\n")
    print(table.markdown(results), end="\n\n")
    print(profiles(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
