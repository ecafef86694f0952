"""Run the benchmarks: `python -m bench.run [--only NAME ...] [--db sqlite|postgresql|both] [--quick]`.

Prints a table of the figures beside their references and targets, writes bench/results/latest.json
and PNG plots to bench/results/. See bench/README.md for what each benchmark measures.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from tqdm import tqdm

from bench import common

NAMES = ("match", "e2e", "timers", "callbacks", "intake")
PER_DB = ("e2e", "timers", "callbacks", "intake")


def _steps(name: str, quick: bool) -> int:
    return {"match": 5 if quick else 10, "e2e": 4, "timers": 2, "callbacks": 2, "intake": 2}[name]


def _versions() -> dict:
    import celery
    import kombu
    import redis as redis_py
    import sqlalchemy

    out = {"python": platform.python_version(), "celery": celery.__version__, "kombu": kombu.__version__,
           "redis-py": redis_py.__version__, "sqlalchemy": sqlalchemy.__version__, "cpus": os.cpu_count(),
           "machine": platform.machine(), "kernel": platform.release()}
    try:
        import redis

        out["redis-server"] = redis.Redis.from_url(common.redis_url(common.REDIS_DB_SYSTEM, flush=False)).info(
            "server")["redis_version"]
    except Exception:
        pass
    try:  # read only
        out["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=common.ROOT, timeout=5).stdout.strip()
    except Exception:
        pass
    if common.which("wrk"):
        out["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0][:40]
    return out


# -- the table ------------------------------------------------------------------------------------

def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def _verdict(ok) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def rows(results: dict) -> list[tuple]:
    b = results["benchmarks"]
    out = []
    m = b.get("match")
    if isinstance(m, dict) and m.get("points"):
        noop = m["noop"]["per_second"]
        for p in m["points"]:
            out.append(("match", "(redis)", f"msgs/s, {p['waiting_tasks']:,} waiting",
                        _fmt(p["per_second"]), f"no-op {_fmt(noop)}/s", _fmt(p["ratio_to_noop"]) + "x",
                        ">= 0.6x", _verdict(p["ratio_to_noop"] >= 0.6)))
        t = m["targets"]["cost_1M_over_1k"]
        out.append(("match", "(redis)", f"cost/msg {t['sizes'][1]:,} / {t['sizes'][0]:,}", _fmt(t["value"]) + "x",
                    "", "", "<= 1.2x", _verdict(t["pass"])))
    for db, r in (b.get("e2e") or {}).items():
        if not isinstance(r, dict) or "phases" not in r:
            continue
        ref = r["reference_noop_hop"]["latency_ms"]
        for ph in r["phases"]:
            lat = ph["latency_ms"]
            cens = lambda v, b=ph["drain_bound_s"]: _fmt(v) if v is not None else f"> {b:g} s"  # noqa: E731
            out.append(("e2e", db, f"ms p50/p99/max, {ph['label']}",
                        f"{cens(lat['p50'])} / {cens(lat['p99'])} / {cens(lat['max'])}",
                        f"1 Celery hop p99 {_fmt(ref['p99'])}", f"{ph['missing']} lost", "p99 <= 50",
                        _verdict(lat["p99"] is not None and lat["p99"] <= 50 and not ph["missing"])))
    for db, r in (b.get("timers") or {}).items():
        if not isinstance(r, dict) or "load" not in r:
            continue
        lat, ref = r["load"]["lateness_s"], r["reference_100"]["lateness_s"]
        cens = lambda v, s=lat: _fmt(v) if v is not None else f"> {s['censored_after_s']:g}"  # noqa: E731
        out.append(("timers", db, f"s late p50/p99/max, {r['load']['timers']:,} in 10s",
                    f"{cens(lat['p50'])} / {cens(lat['p99'])} / {cens(lat['max'])}",
                    f"100 timers p99 {_fmt(ref['p99'])}", f"{r['load']['fired']:,} fired", "p99 <= 1 s",
                    _verdict(r["targets"]["p99_s"]["pass"])))
    for db, r in (b.get("callbacks") or {}).items():
        if not isinstance(r, dict) or "deliver" not in r:
            continue
        out.append(("callbacks", db, "delivered/s", _fmt(r["deliver"]["per_second"]),
                    f"no-op {_fmt(r['reference_noop']['per_second'])}/s", _fmt(r["ratio_to_noop"]) + "x",
                    ">= 500/s", _verdict(r["targets"]["per_second"]["pass"])))
    for db, r in (b.get("intake") or {}).items():
        if not isinstance(r, dict) or "app" not in r:
            continue
        out.append(("intake", db, f"req/s (p99 {_fmt(r['app']['latency_ms']['p99'])} ms)",
                    _fmt(r["app"]["per_second"]),
                    f"bare {_fmt(r['bare']['per_second'])}/s", _fmt(r["ratio"]) + "x", ">= 0.5x",
                    _verdict(r["targets"]["ratio_to_bare"]["pass"])))
    for name, err in results.get("errors", {}).items():
        out.append((name.split(":")[0], name.split(":")[1] if ":" in name else "", "ERROR", err[:60], "", "", "", "FAIL"))
    return out


def table(results: dict) -> str:
    head = ("bench", "db", "metric", "value", "reference (same run)", "ratio/note", "target", "")
    body = rows(results)
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(head), line, *map(fmt, body)])


def markdown_table(results: dict) -> str:
    head = ("bench", "db", "metric", "value", "reference (same run)", "ratio/note", "target", "")
    body = rows(results)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help=f"run only these ({', '.join(NAMES)})")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default=None,
                        help="database(s) for the SQL-bound benchmarks (default: both, or sqlite with --quick; "
                             "PostgreSQL is skipped if it does not answer at 127.0.0.1:5432)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of under 2 minutes (SQLite only unless --db is given)")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (default 2 = cores)")
    parser.add_argument("--profile", action="store_true",
                        help="also sample the processes under test with py-spy (bench/results/profiles/); "
                             "sampling costs CPU, so use it for diagnosis, not for the figures")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other benchmarks' results already in the results file (re-run some)")
    parser.add_argument("--out", default=str(common.RESULTS / "latest.json"), help="results file")
    args = parser.parse_args(argv)

    names = [n for n in NAMES if not args.only or n in args.only]
    args.db = args.db or ("sqlite" if args.quick else "both")
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    notes = []
    if "postgresql" in dbs and not common.postgres_answers():
        notes.append("PostgreSQL does not answer at 127.0.0.1:5432: skipped")
        dbs = [d for d in dbs if d != "postgresql"] or ["sqlite"]
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    common.quiet_fakes()
    bench = common.Bench(quick=args.quick, dbs=dbs, concurrency=args.concurrency, profiling=args.profile)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": args.quick, "dbs": dbs,
                        "only": names, "profiled": args.profile, "worker_concurrency": args.concurrency, "versions": _versions(),
                        "system_env": common.SYSTEM_ENV, "redis_dbs": [common.REDIS_DB_SYSTEM, common.REDIS_DB_REF],
                        "postgres_url": common.PG_BENCH_URL, "logs": str(bench.log_dir), "notes": notes},
               "benchmarks": {}, "errors": {}}
    total = sum(_steps(n, args.quick) * (len(dbs) if n in PER_DB else 1) for n in names)
    began = time.time()
    bar = tqdm(total=total, desc="bench", unit="step", dynamic_ncols=True, position=0)
    from bench import b_callbacks, b_e2e, b_intake, b_match, b_timers

    modules = {"match": b_match, "e2e": b_e2e, "timers": b_timers, "callbacks": b_callbacks, "intake": b_intake}
    try:
        for name in names:
            targets = [None] if name not in PER_DB else dbs
            for db in targets:
                label = name if db is None else f"{name}:{db}"
                bar.set_description(f"bench {label}")
                done_before = bar.n
                try:
                    with bench.scope():
                        if db is None:
                            res = modules[name].run(bench, lambda: bar.update())
                            results["benchmarks"][name] = res
                        else:
                            res = modules[name].run_db(bench, db, lambda: bar.update())
                            results["benchmarks"].setdefault(name, {})[db] = res
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    results["errors"][label] = f"{type(exc).__name__}: {exc}"
                    tqdm.write(f"{label} failed:\n{traceback.format_exc()}")
                if args.profile:
                    results.setdefault("profiles", {}).update(bench.collect_profiles())
                # keep the bar honest when a benchmark failed or skipped steps
                expected = _steps(name, args.quick)
                if bar.n - done_before < expected:
                    bar.update(expected - (bar.n - done_before))
                common.dump(common.RESULTS / "partial.json", results)
    except KeyboardInterrupt:
        results["errors"]["interrupted"] = "stopped by the user or a signal"
        tqdm.write("interrupted: stopping everything that was started")
    finally:
        bar.close()
        bench.close()
    results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    results["meta"]["duration_s"] = round(time.time() - began, 1)
    from bench import plots

    out = Path(args.out)
    if args.merge and out.exists():
        import json

        old = json.loads(out.read_text())
        merged = old.get("benchmarks", {})
        for name, res in results["benchmarks"].items():
            if isinstance(res, dict) and name in PER_DB and isinstance(merged.get(name), dict):
                merged[name].update(res)
            else:
                merged[name] = res
        results["meta"]["merged_into"] = {"run_started": old.get("meta", {}).get("started"),
                                          "kept": sorted(set(old.get("benchmarks", {})) - set(results["benchmarks"]))}
        results["meta"]["previous_meta"] = old.get("meta")
        results["benchmarks"] = merged
        results["errors"] = {**{k: v for k, v in old.get("errors", {}).items()
                                if k.split(":")[0] not in names}, **results["errors"]}
        if old.get("profiles") or results.get("profiles"):
            results["profiles"] = {**old.get("profiles", {}), **results.get("profiles", {})}
    results["plots"] = plots.all_plots(results, common.RESULTS)
    common.dump(out, results)
    (common.RESULTS / "partial.json").unlink(missing_ok=True)
    print()
    print(table(results))
    print()
    settings = (f"settings: worker -c {args.concurrency} prefork (acks_late, prefetch 1), "
                f"dbs {', '.join(dbs)}, Redis DB {common.REDIS_DB_SYSTEM} (system) / {common.REDIS_DB_REF} "
                f"(references), {os.cpu_count()} CPUs, env {common.SYSTEM_ENV}; "
                f"match: no SQL rows for the indexed tasks (never matched, never read from SQL)")
    print(settings)
    for note in notes:
        print("note:", note)
    print(f"results: {out}")
    for p in results["plots"]:
        print(f"plot:    {p}")
    print(f"logs:    {bench.log_dir}  ({results['meta']['duration_s']:.0f} s)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
