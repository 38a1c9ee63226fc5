#!/usr/bin/env python3
"""Turns a bench/results/push-*.jsonl file (`make bench-push`) into Markdown tables and judges the
push targets: at 1,000 subscribers the native fan-out delivers at least nchan's deliveries/s with a
p99 no higher than nchan's; an idle connection's push p99 is at most 1 ms.

usage: python3 bench/push_report.py bench/results/push-<run>.jsonl
Standard library only. Exits 1 when a run lost, duplicated or reordered a message, or failed.
"""
import json
import sys
from collections import defaultdict

from report import load, median, size

SERVERS = ["native", "nchan"]


def cells_of(rows):
    """{(case, size, subscribers): {server: [runs]}}"""
    cells = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cells[(r.get("case", "?"), r.get("size", 0), r.get("subscribers", r.get("connections", 0)))][r.get("server", "?")].append(r)
    return cells


def broken(r):
    return sum(r.get(k) or 0 for k in ("lost", "duplicated", "out_of_order", "bad", "errors"))


def median_run(runs):
    ok = sorted((r for r in runs if not broken(r)), key=lambda r: r.get("deliveries_per_s") or 0)
    return ok[(len(ok) - 1) // 2] if ok else None


def paired(runs_a, runs_b, key):
    """Median over rounds of a's figure over b's (both ran within seconds of each other)."""
    a = {r.get("round"): r for r in runs_a if not broken(r)}
    b = {r.get("round"): r for r in runs_b if not broken(r)}
    q = [a[k][key] / b[k][key] for k in a if k in b and b[k].get(key) and a[k].get(key) is not None]
    return median(q) if q else None


def cpu(r):
    return f"{(r.get('server_cpu') or 0):.0%}"


def first_round_rss(runs):
    """RSS per connection as a fresh worker showed it: round 1 (later rounds reuse what it grew)."""
    first = [r for r in runs if r.get("round") == 1 and r.get("rss_per_connection_kib") is not None]
    return first[0]["rss_per_connection_kib"] if first else None


def fanout_figure(runs):
    r = median_run(runs)
    if r is None:
        return "–"
    sat = ", client-bound" if r.get("client_saturated") else ""
    rss = first_round_rss(runs)
    return (f"{r['deliveries_per_s']:,.0f} ({r['p50_us']:,.0f} / {r['p99_us']:,.0f} µs, {cpu(r)}, "
            f"{r.get('server_cpu_us_per_delivery') or 0:.1f} µs, " + (f"{rss:.1f} KiB" if rss is not None else "–") + f"{sat})")


def rate_figure(r):
    if r is None:
        return "–"
    sat = ", client-bound" if r.get("client_saturated") else ""
    return f"{r['deliveries_per_s']:,.0f} ({cpu(r)}, {r.get('server_cpu_us_per_delivery') or 0:.2f} µs{sat})"


def latency_figure(r):
    if r is None:
        return "–"
    p90 = f"{r['p90_us']:,.0f} / " if r.get("p90_us") is not None else ""
    return f"{r['p50_us']:,.0f} / {p90}{r['p99_us']:,.0f} / {r['max_us']:,.0f} µs"


def ratios(n, c, keys):
    return " | ".join(f"{x:.2f}×" if x else "–" for x in (paired(n, c, k) for k in keys))


def problems(cells):
    out = []
    for key, servers in sorted(cells.items()):
        for s, runs in servers.items():
            for r in runs:
                if broken(r):
                    out.append(f"{key[0]} {s} {size(key[1])} c={key[2]} round {r.get('round')}: lost {r.get('lost')}, "
                               f"duplicated {r.get('duplicated')}, out of order {r.get('out_of_order')}, bad {r.get('bad')}, "
                               f"errors {r.get('errors')} ({r.get('first_error')})")
    return out


def tables(cells):
    """Three tables: one connection, fan-out, idle latency. Medians of the rounds, ratios paired by round."""
    out = ["**One connection** (msgs/s, worker CPU, worker CPU per message):", "",
           "| size | native, producer in the server | native, HTTP publisher | nchan, HTTP publisher | native / nchan |",
           "|---|---|---|---|---|"]
    for sz in sorted({k[1] for k in cells if k[0].startswith("throughput")}):
        prod = cells.get(("throughput-producer", sz, 1), {})
        pub = cells.get(("throughput-publisher", sz, 1), {})
        n, c = pub.get("native", []), pub.get("nchan", [])
        out.append(f"| {size(sz)} | {rate_figure(median_run(prod.get('native', [])))} | {rate_figure(median_run(n))} | "
                   f"{rate_figure(median_run(c))} | {ratios(n, c, ['deliveries_per_s'])} |")
    out += ["", "**Fan-out** (deliveries/s (publish→receive p50 / p99, worker CPU, worker CPU per delivery, "
            "worker RSS per connection in round 1, a fresh worker)):", "",
            "| size | subscribers | native | nchan | native / nchan deliveries/s | native / nchan p99 | "
            "native / nchan CPU per delivery |",
            "|---|---|---|---|---|---|---|"]
    for (case, sz, subs) in sorted(k for k in cells if k[0] == "fanout"):
        n, c = cells[(case, sz, subs)].get("native", []), cells[(case, sz, subs)].get("nchan", [])
        out.append(f"| {size(sz)} | {subs:,} | {fanout_figure(n)} | {fanout_figure(c)} | "
                   f"{ratios(n, c, ['deliveries_per_s', 'p99_us', 'server_cpu_us_per_delivery'])} |")
    out += ["", "**Idle connection, one message at a time** (send→receive p50 / p90 / p99 / max):", "",
            "| producer | native | nchan | native / nchan p99 |", "|---|---|---|---|"]
    for case, what in [("latency-timer", "a timer in the worker, every 2 ms"),
                       ("latency-publisher", "an HTTP POST every 5 ms")]:
        e = cells.get((case, 16, 1))
        if e:
            n, c = e.get("native", []), e.get("nchan", [])
            out.append(f"| {what} | {latency_figure(median_run(n))} | {latency_figure(median_run(c))} | "
                       f"{ratios(n, c, ['p99_us'])} |")
    # Tables without a row (cases not run) are left out.
    blocks, keep = "\n".join(out).split("\n\n"), []
    for i, b in enumerate(blocks):
        if b.startswith("|") and b.count("\n") < 2:
            keep.pop()  # its title
            continue
        keep.append(b)
    return "\n\n".join(keep)


def targets(cells):
    out = ["| target | result |", "|---|---|"]

    def verdict(ok):
        return "met" if ok else "**not met**"

    for (case, sz, subs), servers in sorted(cells.items()):
        if case != "fanout" or subs != 1000:
            continue
        n, c = servers.get("native", []), servers.get("nchan", [])
        q, p = paired(n, c, "deliveries_per_s"), paired(n, c, "p99_us")
        mn, mc = median_run(n), median_run(c)
        if q is None or mn is None or mc is None:
            out.append(f"| fan-out {size(sz)} to 1,000: deliveries/s ≥ nchan's, p99 ≤ nchan's | not measured |")
            continue
        out.append(f"| fan-out {size(sz)} to 1,000: deliveries/s ≥ nchan's | {q:.2f}× ({mn['deliveries_per_s']:,.0f} vs "
                   f"{mc['deliveries_per_s']:,.0f}): {verdict(q >= 1)} |")
        out.append(f"| fan-out {size(sz)} to 1,000: p99 ≤ nchan's | {p:.2f}× ({mn['p99_us']:,.0f} vs {mc['p99_us']:,.0f} µs): "
                   f"{verdict(p <= 1)} |")
    for (case, sz, subs), servers in sorted(cells.items()):
        if case == "latency-timer":
            r = median_run(servers.get("native", []))
            if r is None:
                out.append("| idle push p99 ≤ 1 ms | not measured |")
            else:
                worst = max(x["p99_us"] for x in servers["native"] if not broken(x))
                out.append(f"| idle push p99 ≤ 1 ms (native, a timer's send every 2 ms) | p99 {r['p99_us']:,.0f} µs "
                           f"(p50 {r['p50_us']:,.0f} µs; worst round {worst:,.0f} µs): {verdict(r['p99_us'] <= 1000)} |")
    bad = problems(cells)
    out.append(f"| every push delivered once, in order, intact | "
               + ("met (0 lost, 0 duplicated, 0 out of order in every run)" if not bad else f"**not met** in {len(bad)} runs")
               + " |")
    return "\n".join(out), bad


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    cells = cells_of(load(args[0]))
    print(tables(cells))
    print()
    text, bad = targets(cells)
    print(text)
    for b in bad:
        print(f"- {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
