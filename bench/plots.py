"""PNG figures of a results dict (bench/results/latest.json), matplotlib with the Agg backend."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
COLORS = {"sqlite": "#1f77b4", "postgresql": "#d62728", "ref": "#7f7f7f"}


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def throughput_vs_waiting(match: dict, out: Path) -> str | None:
    points = match.get("points") or []
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    x = [p["waiting_tasks"] for p in points]
    y = [p["per_second"] for p in points]
    lo = [y[i] - min(r["per_second"] for r in p["runs"]) for i, p in enumerate(points)]
    hi = [max(r["per_second"] for r in p["runs"]) - y[i] for i, p in enumerate(points)]
    ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=4, label="messages.match via listener (median, min-max)")
    listener = [np.median([r.get("listener_per_second", np.nan) for r in p["runs"]]) for p in points]
    ax.plot(x, listener, marker="^", ls=":", color="#2ca02c", label="listener intake rate (frames handed to Celery)")
    noop = match["noop"]["per_second"]
    ax.axhline(noop, color=COLORS["ref"], label=f"reference: Celery no-op, same worker ({noop:.0f}/s)")
    ax.axhline(0.6 * noop, color=COLORS["ref"], ls="--", label="target: 0.6 x no-op")
    ax.set_xscale("log")
    ax.set_xlabel("waiting tasks in the Redis index")
    ax.set_ylabel("messages / second")
    ax.set_ylim(bottom=0)
    conc = match["settings"]["worker_concurrency"]
    ax.set_title(f"Matching throughput vs waiting tasks (worker -c {conc}, {match['settings']['messages_per_run']:,} msgs/run)")
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out / "throughput_vs_waiting.png")


def latency_percentiles(e2e: dict, out: Path) -> str | None:
    series = []
    for db, res in e2e.items():
        if not isinstance(res, dict) or "phases" not in res:
            continue
        for ph in res["phases"]:
            series.append((f"{db}\n{ph['label']}", ph["latency_ms"], COLORS.get(db, "C0")))
        ref = res.get("reference_noop_hop")
        if ref:
            series.append((f"reference\none Celery hop\n{ref['rate']:.0f}/s ({db} run)", ref["latency_ms"], COLORS["ref"]))
    if not series:
        return None
    keys = ("p50", "p90", "p99", "max")
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(series)), 4.2))
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        vals = [s[1].get(key) or np.nan for s in series]
        xs = np.arange(len(series)) + (k - (len(keys) - 1) / 2) * width
        bars = ax.bar(xs, vals, width, color=[s[2] for s in series], alpha=0.35 + 0.2 * k, edgecolor="black",
                      linewidth=0.4)
        for b, v in zip(bars, vals):
            if v == v:
                ax.annotate(f"{key}\n{v:.0f}" if v >= 10 else f"{key}\n{v:.1f}", (b.get_x() + b.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=6)
    ax.axhline(50, color="black", ls="--", lw=1, label="target p99 <= 50 ms")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(series)))
    ax.set_xticklabels([s[0] for s in series], fontsize=7)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("End-to-end latency, customer frame in -> send frame out\n(bars: p50 / p90 / p99 / max)")
    ax.legend(fontsize=7)
    return _save(fig, out / "latency_percentiles.png")


def timer_lateness(timers: dict, out: Path) -> str | None:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    drawn = False
    for db, res in timers.items():
        if not isinstance(res, dict) or "load" not in res:
            continue
        for key, ls, lab in (("load", "-", f"{res['load']['timers']:,} timers in 10 s"),
                             ("reference_100", ":", "reference: 100 timers in 10 s")):
            samples = np.sort(res[key].get("samples_s") or [])
            if not samples.size:
                continue
            total = res[key]["timers"]
            p99 = res[key]["lateness_s"].get("p99")
            p99 = f"{p99:.2f} s" if p99 is not None else f"> {res[key]['lateness_s']['censored_after_s']:g} s"
            ax.plot(samples, np.arange(1, samples.size + 1) / total, ls=ls, color=COLORS.get(db, "C0"),
                    label=f"{db}: {lab} (p99 {p99}; {samples.size:,} of {total:,} fired)")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axvline(1.0, color="black", ls="--", lw=1, label="target p99 <= 1 s")
    ax.axhline(0.99, color="grey", lw=0.5)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(left=0)
    ax.set_xlabel("lateness: triggered_at - due time (s, symlog)")
    ax.set_ylabel("fraction of timers fired")
    ax.set_title("time_reach lateness under the normal beat (tick every 0.5 s)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "timer_lateness.png")


def throughput_vs_reference(results: dict, out: Path) -> str | None:
    bars = []  # (label, value, reference, ref label, target text)
    for db, res in (results.get("callbacks") or {}).items():
        if isinstance(res, dict) and "deliver" in res:
            bars.append((f"callbacks\n{db}", res["deliver"]["per_second"], res["reference_noop"]["per_second"],
                         "Celery no-op", ">= 500/s"))
    for db, res in (results.get("intake") or {}).items():
        if isinstance(res, dict) and "app" in res:
            bars.append((f"intake\n{db}", res["app"]["per_second"], res["bare"]["per_second"],
                         "bare Flask insert", ">= 0.5 x bare"))
    match = results.get("match") or {}
    if match.get("points"):
        p = match["points"][-1]
        bars.append((f"match\n{p['waiting_tasks']:,} waiting", p["per_second"], match["noop"]["per_second"],
                     "Celery no-op", ">= 0.6 x no-op"))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(max(6.4, 1.5 * len(bars)), 4))
    xs = np.arange(len(bars))
    ax.bar(xs - 0.2, [b[1] for b in bars], 0.4, label="measured", color="#1f77b4")
    ax.bar(xs + 0.2, [b[2] for b in bars], 0.4, label="reference (same run)", color=COLORS["ref"])
    for x, b in zip(xs, bars):
        ax.annotate(f"{b[1]:.0f}/s\n({b[1] / b[2]:.2f}x)", (x - 0.2, b[1]), ha="center", va="bottom", fontsize=7)
        ax.annotate(f"{b[2]:.0f}/s\n{b[3]}", (x + 0.2, b[2]), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{b[0]}\ntarget {b[4]}" for b in bars], fontsize=7)
    ax.set_ylabel("per second")
    ax.set_title("Throughput beside its reference")
    ax.legend(fontsize=7)
    ax.margins(y=0.2)
    return _save(fig, out / "throughput_vs_reference.png")


def all_plots(results: dict, out: Path) -> list[str]:
    made = []
    b = results.get("benchmarks", {})
    for fn, arg in ((throughput_vs_waiting, b.get("match")), (latency_percentiles, b.get("e2e")),
                    (timer_lateness, b.get("timers")), (throughput_vs_reference, b)):
        if arg:
            try:
                path = fn(arg, out)
            except Exception as exc:  # a plot must never lose the numbers
                print(f"warning: {fn.__name__} failed: {exc!r}")
                path = None
            if path:
                made.append(path)
    return made
