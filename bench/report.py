#!/usr/bin/env python3
"""Turns a bench/results/*.jsonl file into Markdown tables (stdout) and bench/throughput.svg.

usage: python3 bench/report.py bench/results/<run>.jsonl [--svg bench/throughput.svg]
Standard library only, so `make bench` needs nothing from PyPI.
"""
import json
import math
import sys
from collections import defaultdict

SERVERS = ["native", "lua_framing", "floor", "apisix_original"]
COLORS = {"native": "#d62728", "lua_framing": "#1f77b4", "floor": "#7f7f7f", "apisix_original": "#2ca02c"}


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


def table(rows):
    cells = defaultdict(dict)
    for r in rows:
        cells[(r["state"], r["connections"], r["depth"])][r["server"]] = r
    present = [s for s in SERVERS if any(s in c for c in cells.values())]
    head = "| state | conns | depth | " + " | ".join(f"{s} msgs/s (p99 µs, CPU, RSS MiB)" for s in present)
    head += " | native / " + " | native / ".join(s for s in present if s != "native") + " |"
    out = [head, "|" + "---|" * (3 + len(present) + len(present) - 1)]
    for key in sorted(cells):
        c = cells[key]
        parts = [size(key[0]), str(key[1]), str(key[2])]
        for s in present:
            r = c.get(s)
            if r is None:
                parts.append("–")
            elif "skipped" in r:
                parts.append("not served: " + r["skipped"])
            elif r.get("errors"):
                parts.append(f"{r['msgs_per_s']:,.0f} with {r['errors']} errors")
            else:
                sat = ", client-bound" if r.get("client_saturated") else ""
                rss = (r.get("server_rss_kib_after") or 0) / 1024
                parts.append(f"{r['msgs_per_s']:,.0f} ({r['p99_us']:,}, {r['server_cpu']:.0%}, {rss:.0f}{sat})")
        n = c.get("native")
        for s in present:
            if s == "native":
                continue
            o = c.get(s)
            ok = n and o and "skipped" not in n and "skipped" not in o and o.get("msgs_per_s")
            parts.append(f"{n['msgs_per_s'] / o['msgs_per_s']:.2f}×" if ok else "–")
        out.append("| " + " | ".join(parts) + " |")
    return "\n".join(out)


def svg(rows, path):
    # msgs/s by state size, best cell per (server, state), log-log axes.
    best = defaultdict(dict)
    for r in rows:
        if "skipped" in r or r.get("errors") or not r.get("msgs_per_s"):
            continue
        cur = best[r["server"]].get(r["state"])
        if cur is None or r["msgs_per_s"] > cur:
            best[r["server"]][r["state"]] = r["msgs_per_s"]
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
          f'<text x="{W / 2}" y="18" text-anchor="middle">pubsub pings per second by state size (best cell per server)</text>']
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
    svg(rows, out_svg)
    print(f"\nplot: {out_svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
