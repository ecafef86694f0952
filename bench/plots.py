"""PNG figures of a results dict (bench/results/latest.json), matplotlib with the Agg backend. Each figure
says which run it comes from (and, for a --quick run, that its sizes are a smoke test's)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
COLORS = {"sqlite": "#1f77b4", "postgresql": "#d62728", "ref": "#7f7f7f"}


def _save(fig, path: Path, stamp: str) -> str:
    fig.text(0.99, 0.005, stamp, ha="right", va="bottom", fontsize=6, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _per_db(results: dict, name: str, key: str):
    for db, res in (results.get(name) or {}).items():
        if isinstance(res, dict) and key in res:
            yield db, res


def throughput_vs_waiting(b: dict, out: Path, stamp: str) -> str | None:
    match = b.get("match") or {}
    points = match.get("points") or []
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    x = [p["waiting_tasks"] for p in points]
    y = [p["per_second"] for p in points]
    lo = [y[i] - min(r["per_second"] for r in p["runs"]) for i, p in enumerate(points)]
    hi = [max(r["per_second"] for r in p["runs"]) - y[i] for i, p in enumerate(points)]
    ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=4, label="matching via listener (median, min-max)")
    noop = match["noop"]["per_second"]
    ax.axhline(noop, color=COLORS["ref"], label=f"reference: Celery no-op, same workers ({noop:.0f}/s)")
    ax.axhline(0.6 * noop, color=COLORS["ref"], ls="--", label="target: 0.6 x no-op")
    ax.set_xscale("log")
    ax.set_xlabel("waiting tasks in the Redis index")
    ax.set_ylabel("messages / second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Matching throughput vs waiting tasks ({match['settings']['messages_per_run']:,} msgs/run)")
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out / "throughput_vs_waiting.png", stamp)


def latency_percentiles(b: dict, out: Path, stamp: str) -> str | None:
    series = []  # (label, stats, color)
    for db, res in _per_db(b, "e2e", "mixed"):
        color = COLORS.get(db, "C0")
        series.append((f"{db}\n10/s light", res["light"]["latency_ms"], color))
        for i, run in enumerate(res["mixed"]["runs_detail"], 1):
            series.append((f"{db}\n100+100/s\nrun {i}", run["latency_ms"], color))
        series.append((f"{db}\n100+100/s\npooled", res["mixed"]["pooled_ms"], color))
        ten_k, label = res["ten_k"], f"{db}\n{res['ten_k']['messages']:,}\ncustomers"
        stats = dict(ten_k["latency_ms"])
        censored = [k for k in ("p50", "p90", "p99", "max") if stats.get(k) is None]
        if censored:  # later than the drain bound: drawn at the bound
            stats.update({k: 1000 * ten_k["drain_bound_s"] for k in censored})
            label += f"\n({', '.join(censored)}\n> {ten_k['drain_bound_s']:g} s)"
        series.append((label, stats, color))
        series.append((f"one Celery\nhop ({db}\nrun)", res["reference_noop_hop"]["latency_ms"], COLORS["ref"]))
    if not series:
        return None
    keys = ("p50", "p90", "p99", "max")
    fig, ax = plt.subplots(figsize=(max(6.4, 0.95 * len(series)), 4.4))
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        vals = [s[1].get(key) or np.nan for s in series]
        xs = np.arange(len(series)) + (k - (len(keys) - 1) / 2) * width
        bars = ax.bar(xs, vals, width, color=[s[2] for s in series], alpha=0.35 + 0.2 * k, edgecolor="black",
                      linewidth=0.4)
        if key == "p99":
            for bar, v in zip(bars, vals):
                if v == v:
                    ax.annotate(f"{v:.0f}" if v >= 10 else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, v),
                                ha="center", va="bottom", fontsize=6)
    ax.axhline(50, color="black", ls="--", lw=1, label="target p99 <= 50 ms (100+100/s)")
    ax.axhline(100, color="black", ls=":", lw=1, label="target p99 <= 100 ms (10,000 customers)")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(series)))
    ax.set_xticklabels([s[0] for s in series], fontsize=6)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("End-to-end latency, customer frame in -> send frame out\n(bars: p50 / p90 / p99 / max; p99 labelled)")
    ax.legend(fontsize=7)
    return _save(fig, out / "latency_percentiles.png", stamp)


def timer_lateness(b: dict, out: Path, stamp: str) -> str | None:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    drawn = False
    for db, res in _per_db(b, "timers", "load"):
        for key, ls in (("load", "-"), ("reference_20", ":")):
            samples = np.sort(res[key].get("samples_s") or [])
            if not samples.size:
                continue
            total, stats = res[key]["timers"], res[key]["first_send_late_s"]
            p99 = f"{stats['p99']:.2f} s" if stats.get("p99") is not None else f"> {stats['censored_after_s']:g} s"
            ax.plot(samples, np.arange(1, samples.size + 1) / total, ls=ls, color=COLORS.get(db, "C0"),
                    label=f"{db}: {total:,} due in the same second (p99 {p99})")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axvline(1.0, color="black", ls="--", lw=1, label="target p99 <= 1 s")
    ax.axhline(0.99, color="grey", lw=0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("first send frame after the due time (s)")
    ax.set_ylabel("fraction of timers sent")
    ax.set_title("time_reach: how late the first send leaves (beat ticks every 0.5 s)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "timer_lateness.png", stamp)


def throughput_vs_reference(b: dict, out: Path, stamp: str) -> str | None:
    bars = []  # (label, value, reference, ref label, target text)
    for db, res in _per_db(b, "fire", "fire"):
        bars.append((f"fired msgs\n{db}", res["fire"]["per_second"], res["reference_noop"]["per_second"],
                     "Celery no-op", ">= 0.4 x no-op"))
    for db, res in _per_db(b, "intake", "app"):
        bars.append((f"intake\n{db}", res["app"]["per_second"], res["bare"]["per_second"],
                     "bare Flask insert", ">= 0.6 x bare"))
    for db, res in _per_db(b, "callbacks", "deliver"):
        bars.append((f"callbacks\n{db}", res["deliver"]["per_second"], res["reference_noop"]["per_second"],
                     "Celery no-op", ">= 500/s"))
    match = b.get("match") or {}
    if match.get("points"):
        p = match["points"][-1]
        bars.append((f"match\n{p['waiting_tasks']:,} waiting", p["per_second"], match["noop"]["per_second"],
                     "Celery no-op", ">= 0.6 x no-op"))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(max(6.4, 1.5 * len(bars)), 4))
    xs = np.arange(len(bars))
    ax.bar(xs - 0.2, [x[1] for x in bars], 0.4, label="measured", color="#1f77b4")
    ax.bar(xs + 0.2, [x[2] for x in bars], 0.4, label="reference (same run)", color=COLORS["ref"])
    for x, bar in zip(xs, bars):
        ax.annotate(f"{bar[1]:.0f}/s\n({bar[1] / bar[2]:.2f}x)", (x - 0.2, bar[1]), ha="center", va="bottom",
                    fontsize=7)
        ax.annotate(f"{bar[2]:.0f}/s\n{bar[3]}", (x + 0.2, bar[2]), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x[0]}\ntarget {x[4]}" for x in bars], fontsize=7)
    ax.set_ylabel("per second")
    ax.set_title("Throughput beside its reference")
    ax.legend(fontsize=7)
    ax.margins(y=0.2)
    return _save(fig, out / "throughput_vs_reference.png", stamp)


def scale_out(b: dict, out: Path, stamp: str) -> str | None:
    found = list(_per_db(b, "scale", "two"))
    if not found:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4), gridspec_kw={"width_ratios": [1, 2]})
    for i, (db, res) in enumerate(found):
        ys = [res["one"]["per_second"], res["two"]["per_second"]]
        left.bar(np.arange(2) + (i - (len(found) - 1) / 2) * 0.35, ys, 0.35, color=COLORS.get(db, "C0"),
                 label=f"{db} (x{res['gain']:.2f})")
    left.set_xticks([0, 1])
    left.set_xticklabels(["1 worker\n(CPU set A)", "2 workers\n(A and B)"])
    left.set_ylabel("fired messages / second")
    left.set_title("Fired/s with pinned workers")
    left.legend(fontsize=7)
    names = sorted({k for _, res in found for step in ("one", "two") for k in res[step]["cpu_share_of_a_core"]})
    width = 0.8 / (2 * len(found))
    for i, (db, res) in enumerate(found):
        for j, step in enumerate(("one", "two")):
            vals = [res[step]["cpu_share_of_a_core"].get(n, 0.0) for n in names]
            xs = np.arange(len(names)) + (2 * i + j - (2 * len(found) - 1) / 2) * width
            right.bar(xs, vals, width, color=COLORS.get(db, "C0"), alpha=0.45 + 0.4 * j,
                      label=f"{db}, {'1 worker' if step == 'one' else '2 workers'}")
    right.axhline(1.0, color="black", ls="--", lw=1, label="one whole CPU")
    right.set_xticks(np.arange(len(names)))
    right.set_xticklabels(names, fontsize=7, rotation=30)
    right.set_ylabel("share of one CPU during the burst")
    right.set_title("Who is busy (a process near 1.0 is the next bottleneck;\n"
                    "machine: all CPUs, others: processes outside the system)", fontsize=8)
    right.legend(fontsize=6)
    return _save(fig, out / "scale_out.png", stamp)


def all_plots(results: dict, out: Path) -> list[str]:
    meta = results.get("meta", {})
    stamp = f"run of {meta.get('started', '?')}" + (" - QUICK smoke run: small sizes, not the figures"
                                                    if meta.get("quick") else "")
    made = []
    b = results.get("benchmarks", {})
    for fn in (throughput_vs_waiting, latency_percentiles, timer_lateness, throughput_vs_reference, scale_out):
        try:
            path = fn(b, out, stamp)
        except Exception as exc:  # a plot must never lose the numbers
            print(f"warning: {fn.__name__} failed: {exc!r}")
            path = None
        if path:
            made.append(path)
    return made
