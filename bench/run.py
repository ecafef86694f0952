"""Run the benchmarks: `python -m bench.run [--only NAME ...] [--db sqlite|postgresql|both] [--quick]`.

Prints issue 13's table (each figure on both databases with its target), the detailed table (every
figure beside its reference from the same run) and the profile table; writes bench/results/latest.json
and PNG plots to bench/results/. See bench/README.md for what each benchmark measures.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from tqdm import tqdm

from bench import common, report, stack, table
from devkit import processes

NAMES = ("fire", "e2e", "intake", "timers", "scale", "profile", "match", "callbacks")
PER_DB = ("fire", "e2e", "intake", "timers", "scale", "profile", "callbacks")
STEPS = {"fire": 2, "e2e": 4, "intake": 2, "timers": 2, "scale": 2, "profile": 2, "callbacks": 2}


def _steps(name: str, quick: bool) -> int:
    return (5 if quick else 10) if name == "match" else STEPS[name]


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
    parser.add_argument("--concurrency", type=int, default=None,
                        help="WORKER_CONCURRENCY for the Procfile's worker line (default: the Procfile's own default)")
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
                        "only": names, "profiled": args.profile, "versions": _versions(),
                        "procfile": stack.describe(processes.base_env("", "", **bench.env())),
                        "system_env": common.SYSTEM_ENV, "redis_dbs": [common.REDIS_DB_SYSTEM, common.REDIS_DB_REF],
                        "postgres_url": common.PG_BENCH_URL, "logs": str(bench.log_dir), "notes": notes},
               "benchmarks": {}, "errors": {}}
    total = sum(_steps(n, args.quick) * (len(dbs) if n in PER_DB else 1) for n in names)
    began = time.time()
    bar = tqdm(total=total, desc="bench", unit="step", dynamic_ncols=True, position=0)
    modules = {name: importlib.import_module(f"bench.b_{name}") for name in names}
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
                    results.setdefault("py_spy", {}).update(bench.collect_profiles())
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
        if old.get("py_spy") or results.get("py_spy"):
            results["py_spy"] = {**old.get("py_spy", {}), **results.get("py_spy", {})}
    results["plots"] = plots.all_plots(results, common.RESULTS)
    common.dump(out, results)
    (common.RESULTS / "partial.json").unlink(missing_ok=True)
    print()
    print(report.headline(results), end="\n\n")
    print(table.text(results), end="\n\n")
    if results["benchmarks"].get("profile"):
        print(report.profiles(results), end="\n\n")
    procfile = "; ".join(f"{k}: {v}" for k, v in results["meta"]["procfile"].items() if k not in stack.NOT_STARTED)
    print(f"settings: the Procfile's lines ({procfile}); dbs {', '.join(dbs)}, Redis DB {common.REDIS_DB_SYSTEM} "
          f"(system) / {common.REDIS_DB_REF} (references), {os.cpu_count()} CPUs, env {bench.env()}"
          + ("; QUICK: smoke sizes, not the figures" if args.quick else ""))
    for note in notes:
        print("note:", note)
    print(f"results: {out}")
    for p in results["plots"]:
        print(f"plot:    {p}")
    print(f"logs:    {bench.log_dir}  ({results['meta']['duration_s']:.0f} s)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
