"""The detailed table of a results dict: every figure beside its reference from the same run, its target
and PASS/MISS (plain text for the terminal, Markdown for the READMEs)."""
from __future__ import annotations

from bench.report import fmt

HEAD = ("bench", "db", "metric", "value", "reference (same run)", "ratio/note", "target", "")


def _verdict(ok) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def _lat(stats: dict, bound) -> str:
    cens = lambda v: fmt(v) if v is not None else f"> {bound:g} s"  # noqa: E731
    return f"{cens(stats['p50'])} / {cens(stats['p99'])} / {cens(stats['max'])}"


def _unserved(phase: dict, bound: float | None = None) -> str:
    """Messages whose send had not left `drain_bound_s` after the last message (late, or lost)."""
    bound = phase.get("drain_bound_s", bound)
    return f"{phase['missing']:,} not served in {bound:g} s" if phase["missing"] else "all served"


def _per_db(b: dict, name: str, key: str):
    for db, r in (b.get(name) or {}).items():
        if isinstance(r, dict) and key in r:
            yield db, r


def rows(results: dict) -> list[tuple]:
    b = results["benchmarks"]
    out = []
    for db, r in _per_db(b, "fire", "fire"):
        f = r["fire"]
        lost = f"{f['missing']} lost" + (f" (+{r['warm_up_lost']} in the warm-up)" if r.get("warm_up_lost") else "")
        out.append(("fire", db, f"fired msgs/s, {f['messages']:,} waiting", fmt(f["per_second"]),
                    f"no-op {fmt(r['reference_noop']['per_second'])}/s", f"{fmt(r['ratio_to_noop'])}x, {lost}",
                    ">= 0.4x", _verdict(r["targets"]["ratio_to_noop"]["pass"])))
    for db, r in _per_db(b, "e2e", "mixed"):
        hop = f"1 Celery hop p99 {fmt(r['reference_noop_hop']['latency_ms']['p99'])}"
        light = r["light"]
        out.append(("e2e", db, "ms p50/p99/max, 10/s (light)", _lat(light["latency_ms"], light["drain_bound_s"]), hop,
                    _unserved(light), "p99 <= 50",
                    _verdict(not light["missing"] and light["latency_ms"]["p99"] <= 50)))
        m = r["mixed"]
        out.append(("e2e", db, f"ms p50/p99/max, 100+100/s, {m['runs']} runs pooled",
                    _lat(m["pooled_ms"], r["mixed"]["runs_detail"][0]["drain_bound_s"]), hop,
                    f"{_unserved(m, r['mixed']['runs_detail'][0]['drain_bound_s'])}, {m['sends_to_non_firing']} stray",
                    "p99 <= 50",
                    _verdict(r["targets"]["p99_ms_mixed"]["pass"])))
        k = r["ten_k"]
        out.append(("e2e", db, f"ms p50/p99/max, {k['label']}", _lat(k["latency_ms"], k["drain_bound_s"]), hop,
                    _unserved(k), "p99 <= 100", _verdict(r["targets"]["p99_ms_10k"]["pass"])))
    for db, r in _per_db(b, "intake", "app"):
        out.append(("intake", db, f"req/s (p99 {fmt(r['app']['latency_ms']['p99'])} ms)", fmt(r["app"]["per_second"]),
                    f"bare {fmt(r['bare']['per_second'])}/s", fmt(r["ratio"]) + "x", ">= 0.6x",
                    _verdict(r["targets"]["ratio_to_bare"]["pass"])))
    for db, r in _per_db(b, "timers", "load"):
        lat, ref = r["load"]["first_send_late_s"], r["reference_20"]["first_send_late_s"]
        cens = lambda v, s=lat: fmt(v) if v is not None else f"> {s['censored_after_s']:g}"  # noqa: E731
        out.append(("timers", db, f"s late p50/p99/max, {r['load']['timers']:,} due in 1 s",
                    f"{cens(lat['p50'])} / {cens(lat['p99'])} / {cens(lat['max'])}", f"20 timers p99 {fmt(ref['p99'])}",
                    f"{r['load']['sent']:,} sent", "p99 <= 1 s", _verdict(r["targets"]["p99_s"]["pass"])))
    for db, r in _per_db(b, "scale", "two"):
        out.append(("scale", db, "fired msgs/s, 1 -> 2 pinned workers", f"{fmt(r['one']['per_second'])} -> "
                    f"{fmt(r['two']['per_second'])}", "", f"{fmt(r['gain'])}x; next: {r['next_bottleneck']}", "grows",
                    _verdict(r["gain"] > 1)))
    m = b.get("match")
    if isinstance(m, dict) and m.get("points"):
        noop = m["noop"]["per_second"]
        for p in m["points"]:
            out.append(("match", "(redis)", f"msgs/s, {p['waiting_tasks']:,} waiting", fmt(p["per_second"]),
                        f"no-op {fmt(noop)}/s", fmt(p["ratio_to_noop"]) + "x", ">= 0.6x",
                        _verdict(p["ratio_to_noop"] >= 0.6)))
        t = m["targets"]["cost_1M_over_1k"]
        out.append(("match", "(redis)", f"cost/msg {t['sizes'][1]:,} / {t['sizes'][0]:,}", fmt(t["value"]) + "x",
                    "", "", "<= 1.2x", _verdict(t["pass"])))
    for db, r in _per_db(b, "callbacks", "deliver"):
        out.append(("callbacks", db, "delivered/s", fmt(r["deliver"]["per_second"]),
                    f"no-op {fmt(r['reference_noop']['per_second'])}/s", fmt(r["ratio_to_noop"]) + "x",
                    ">= 500/s", _verdict(r["targets"]["per_second"]["pass"])))
    for name, err in results.get("errors", {}).items():
        bench, _, db = name.partition(":")
        out.append((bench, db, "ERROR", err[:60], "", "", "", "FAIL"))
    return out


def text(results: dict) -> str:
    body = rows(results)
    widths = [max(len(str(r[i])) for r in [HEAD, *body]) for i in range(len(HEAD))]
    line = "  ".join("-" * w for w in widths)
    fmt_row = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt_row(HEAD), line, *map(fmt_row, rows(results))])


def markdown(results: dict) -> str:
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows(results)]
    return "\n".join(out)
