#!/usr/bin/env python3
"""Turns a bench/results/*.jsonl file into Markdown tables (stdout) and bench/throughput.svg.

usage: python3 bench/report.py bench/results/<run>.jsonl [--svg bench/throughput.svg]
Standard library only, so `make bench` needs nothing from PyPI.
"""
import json
import math
import sys
from collections import defaultdict

SERVERS = ["native", "native_lua_handler", "lua_framing", "floor", "apisix_original", "native_off", "native_lua_handler_off"]
COLORS = {"native": "#d62728", "native_lua_handler": "#ff7f0e", "lua_framing": "#1f77b4", "floor": "#7f7f7f",
          "apisix_original": "#2ca02c", "native_off": "#9467bd", "native_lua_handler_off": "#8c564b"}


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def size(n):
    return {16: "16 B", 1024: "1 KiB", 60000: "60,000 B", 1048576: "1 MiB"}.get(n, f"{n} B")


def median_run(runs):
    """The run with the median msgs/s (the lower middle one of an even number)."""
    runs = sorted(runs, key=lambda r: r["msgs_per_s"])
    return runs[(len(runs) - 1) // 2]


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def rss_mib(r):
    return (r.get("server_rss_kib_peak") or r.get("server_rss_kib_after") or 0) / 1024


def cells_of(rows):
    """{(state, conns, depth): {server: {"runs": [...], "median": run, "skipped": text}}}"""
    cells = defaultdict(lambda: defaultdict(lambda: {"runs": []}))
    for r in rows:
        c = cells[(r["state"], r["connections"], r["depth"])][r["server"]]
        if "skipped" in r:
            c["skipped"] = r["skipped"]
        elif r.get("msgs_per_s") is not None:
            c["runs"].append(r)
    for servers in cells.values():
        for c in servers.values():
            if c["runs"]:
                c["median"] = median_run(c["runs"])
    return cells


def ratio(cell, a, b, key="msgs_per_s"):
    """Median over rounds of a's figure over b's, rounds paired (both ran within seconds)."""
    ra = {r.get("round", 1): r for r in cell.get(a, {}).get("runs", [])}
    rb = {r.get("round", 1): r for r in cell.get(b, {}).get("runs", [])}
    pairs = [ra[k][key] / rb[k][key] for k in ra if k in rb and rb[k].get(key)]
    return median(pairs) if pairs else None


def table(rows):
    cells = cells_of(rows)
    present = [s for s in SERVERS if any(s in c for c in cells.values())]
    head = "| state | conns | depth | " + " | ".join(f"{s} msgs/s (p99 µs, CPU, peak RSS MiB)" for s in present)
    head += " | native / " + " | native / ".join(s for s in present if s != "native") + " |"
    out = [head, "|" + "---|" * (3 + len(present) + len(present) - 1)]
    for key in sorted(cells):
        c = cells[key]
        parts = [size(key[0]), str(key[1]), str(key[2])]
        for s in present:
            e = c.get(s, {})
            r = e.get("median")
            if "skipped" in e:
                parts.append("not served: " + e["skipped"])
            elif r is None:
                parts.append("–")
            else:
                errs = sum(x.get("errors") or 0 for x in e["runs"])
                sat = ", client-bound" if r.get("client_saturated") else ""
                err = f", **{errs} errors**" if errs else ""
                parts.append(f"{r['msgs_per_s']:,.0f} ({r['p99_us']:,}, {r['server_cpu']:.0%}, {rss_mib(r):.0f}{sat}{err})")
        for s in present:
            if s != "native":
                q = ratio(c, "native", s)
                parts.append(f"{q:.2f}×" if q else "–")
        out.append("| " + " | ".join(parts) + " |")
    return "\n".join(out)


def targets(rows):
    """The benchmark issue's targets, judged from the medians and paired ratios."""
    cells = cells_of(rows)
    out = ["| target | result |", "|---|---|"]

    def verdict(ok):
        return "met" if ok else "**not met**"

    for state, conns, depth in [(16, 64, 16), (60000, 1, 16)]:
        c = cells.get((state, conns, depth), {})
        q = ratio(c, "native", "apisix_original")
        if q is None:
            out.append(f"| native ≥ 3× apisix_original at {size(state)}, {conns}×{depth} | not measured |")
        else:
            n, o = c["native"]["median"], c["apisix_original"]["median"]
            out.append(f"| native ≥ 3× apisix_original at {size(state)}, {conns}×{depth} | {q:.2f}× "
                       f"({n['msgs_per_s']:,.0f} vs {o['msgs_per_s']:,.0f} msgs/s): {verdict(q >= 3)} |")
    judged, missed = 0, []
    for key, c in sorted(cells.items()):
        f = c.get("floor", {}).get("median")
        q = ratio(c, "native", "floor")
        if f is None or q is None or f["server_cpu"] < 0.9:
            continue
        judged += 1
        if q < 0.6:
            missed.append(f"{size(key[0])} {key[1]}×{key[2]} ({q:.2f}×)")
    worst = min((ratio(c, "native", "floor") for k, c in cells.items()
                 if c.get("floor", {}).get("median", {}).get("server_cpu", 0) >= 0.9
                 and ratio(c, "native", "floor") is not None), default=None)
    text = f"{judged} cells judged, lowest {worst:.2f}×" if worst is not None else "no cell judged"
    out.append(f"| native ≥ 0.6× floor where the floor's core is ≥ 90 % busy | {text}: "
               + (verdict(True) if not missed else "**not met** in " + ", ".join(missed)) + " |")
    for what, key in [("p99 latency", "p99_us"), ("peak worker RSS", "server_rss_kib_peak")]:
        over, worst, n = [], None, 0
        for k, c in sorted(cells.items()):
            if "median" not in c.get("native", {}) or "median" not in c.get("apisix_original", {}):
                continue
            a, b = c["native"]["median"].get(key), c["apisix_original"]["median"].get(key)
            if not a or not b:
                continue
            n += 1
            q = a / b
            worst = q if worst is None else max(worst, q)
            if q > 1.1:
                over.append(f"{size(k[0])} {k[1]}×{k[2]} ({q:.2f}×)")
        if n == 0:
            out.append(f"| {what} ≤ 1.1× apisix_original | not measured |")
        else:
            out.append(f"| {what} ≤ 1.1× apisix_original | {n} cells, highest {worst:.2f}×: "
                       + (verdict(True) if not over else "**not met** in " + ", ".join(over)) + " |")
    return "\n".join(out)


def svg(rows, path):
    # msgs/s by state size, the best cell's median per (server, state), log-log axes.
    best = defaultdict(dict)
    for (state, _, _), servers in cells_of(rows).items():
        for server, e in servers.items():
            r = e.get("median")
            if r is None or not r.get("msgs_per_s"):
                continue
            cur = best[server].get(state)
            if cur is None or r["msgs_per_s"] > cur:
                best[server][state] = r["msgs_per_s"]
    if not best:
        return
    W, H, L, B, T, R = 640, 400, 70, 50, 30, 150
    xs = sorted({s for d in best.values() for s in d})
    ys = [v for d in best.values() for v in d.values()]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs)) or 1
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    if x1 == x0:
        x1 = x0 + 1
    fx = lambda v: L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)
    fy = lambda v: H - B - (math.log10(v) - y0) / (y1 - y0) * (H - B - T)
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
          f'<rect width="{W}" height="{H}" fill="white"/>',
          f'<text x="{W / 2}" y="18" text-anchor="middle">pubsub pings per second by state size (best cell per server, median of rounds)</text>']
    for e in range(y0, y1 + 1):
        y = fy(10 ** e)
        el.append(f'<line x1="{L}" x2="{W - R}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        el.append(f'<text x="{L - 6}" y="{y + 4}" text-anchor="end">1e{e}</text>')
    for v in xs:
        x = fx(v)
        el.append(f'<line x1="{x}" x2="{x}" y1="{T}" y2="{H - B}" stroke="#eee"/>')
        el.append(f'<text x="{x}" y="{H - B + 16}" text-anchor="middle">{size(v)}</text>')
    el.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">ping state size</text>')
    for i, s in enumerate([s for s in SERVERS if s in best]):
        pts = sorted(best[s].items())
        d = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts)
        el.append(f'<polyline points="{d}" fill="none" stroke="{COLORS[s]}" stroke-width="2"/>')
        for x, y in pts:
            el.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{COLORS[s]}"/>')
        el.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * i}" fill="{COLORS[s]}">{s}</text>')
    el.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(el) + "\n")


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    out_svg = "bench/throughput.svg"
    if "--svg" in args:
        out_svg = args[args.index("--svg") + 1]
    rows = load(args[0])
    print(table(rows))
    print()
    print(targets(rows))
    svg(rows, out_svg)
    print(f"\nplot: {out_svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
