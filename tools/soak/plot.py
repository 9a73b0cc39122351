"""Plots a soak run (bench/src/soak.rs): resources and per-route latency over time, as PNG.

    python plot.py <csv dir> <output prefix> <title>

Reads <csv dir>/resources.csv and requests.csv (every request: when it was due, its route,
how long it took from then, whether it succeeded); writes <prefix>-resources.png and
<prefix>-latency.png. Needs matplotlib (scripts/soak installs it into a cached virtualenv).
"""
import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(csv_dir, prefix, title):
    resources = read(f"{csv_dir}/resources.csv")
    minutes = [float(r["seconds"]) / 60 for r in resources]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    series = [
        ("rss_mib", "resident memory (MiB)"),
        ("fds", "open file descriptors"),
        ("db_connections", "database connections"),
    ]
    for ax, (key, label) in zip(axes, series):
        values = [float(r[key]) for r in resources]
        ax.plot(minutes, values, color="#1f77b4")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0, top=max(values + [1]) * 1.25)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(f"Soak: {title}")
    fig.tight_layout()
    fig.savefig(f"{prefix}-resources.png", dpi=100)

    by_route = defaultdict(list)
    if os.path.exists(f"{csv_dir}/requests.csv"):
        # Every request: per route and minute, the percentiles of that minute's requests.
        minutes_of = defaultdict(lambda: defaultdict(list))
        for r in read(f"{csv_dir}/requests.csv"):
            if r["ok"] == "true":
                minutes_of[r["route"]][int(float(r["due_s"]) // 60)].append(float(r["ms"]))
        for route, minutes in minutes_of.items():
            for minute, values in sorted(minutes.items()):
                values.sort()
                pick = lambda p: values[round((len(values) - 1) * p)]
                by_route[route].append((minute + 0.5, pick(0.5), pick(0.99)))
        window = "each point: the requests due in one minute"
    else:
        # An older run: percentiles of 10-second windows.
        for r in read(f"{csv_dir}/latencies.csv"):
            if int(r["requests"]) > 0:
                by_route[r["route"]].append((float(r["seconds"]) / 60, float(r["p50_ms"]), float(r["p99_ms"])))
        window = "each point: the requests of 10 s"
    fig, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for route, points in sorted(by_route.items()):
        xs = [p[0] for p in points]
        axes[0].plot(xs, [p[1] for p in points], label=route)
        axes[1].plot(xs, [p[2] for p in points], label=route)
    axes[0].set_ylabel("p50 (ms)")
    axes[1].set_ylabel("p99 (ms)")
    # p50 on a linear scale from 0; p99 on a log scale (a slow minute would flatten the rest).
    axes[0].set_ylim(bottom=0)
    axes[1].set_yscale("log")
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes[1].yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    axes[1].set_xlabel(f"minutes ({window})")
    fig.suptitle(f"Soak latency per route: {title}")
    fig.tight_layout()
    fig.savefig(f"{prefix}-latency.png", dpi=100)


if __name__ == "__main__":
    main(*sys.argv[1:4])
