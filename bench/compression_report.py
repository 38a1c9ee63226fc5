"""The BENCHMARKS table of a bench/compression_bench.sh results file: per cell, compression off
and on (medians of the rounds), and on / off. "loadgen µs/msg" is the load generator's own CPU
per message (client_cpu / msgs_per_s)."""

import json
import statistics
import sys
from collections import defaultdict


def main(path: str) -> None:
    runs = defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        mode = r["compress"] if isinstance(r["compress"], str) else ("on" if r["compress"] else "off")
        runs[(r["payload"], r["state"], mode)].append(r)
    print("| payload | compression | msgs/s | worker CPU | worker µs/msg | loadgen µs/msg | wire out B/msg | wire in B/msg | on/off msgs/s | on/off wire in | on/off µs/msg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    for (payload, state, comp) in sorted(runs, key=lambda k: (k[0] != "bytes", k[0], k[1], k[2] != "off", k[2])):
        rs = runs[(payload, state, comp)]
        mps, cpu = med(rs, "msgs_per_s"), med(rs, "server_cpu")
        us = statistics.median(r["server_cpu"] / r["msgs_per_s"] * 1e6 for r in rs)
        client_us = statistics.median(r["client_cpu"] / r["msgs_per_s"] * 1e6 for r in rs)
        row = f"| {payload} {state} B | {comp} | {mps:,.0f} | {cpu:.2f} | {us:.1f} | {client_us:.1f} | {med(rs, 'wire_out_per_msg'):,.0f} | {med(rs, 'wire_in_per_msg'):,.0f} |"
        if comp != "off" and (payload, state, "off") in runs:
            off = runs[(payload, state, "off")]
            off_us = statistics.median(r["server_cpu"] / r["msgs_per_s"] * 1e6 for r in off)
            row += f" {mps / med(off, 'msgs_per_s'):.2f}× | {med(rs, 'wire_in_per_msg') / med(off, 'wire_in_per_msg'):.2f}× | {us / off_us:.2f}× |"
        else:
            row += " | | |"
        print(row)


if __name__ == "__main__":
    main(sys.argv[1])
