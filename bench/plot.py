#!/usr/bin/python3
"""Plots a `moedist bench --json` file: time per call and fraction of the copy bandwidth against the swept
parameter, dispatch and combine side by side, one line per engine and baseline.

    /usr/bin/python3 bench/plot.py bench.json -o bench.png

The swept parameter is the one shape field (world size, tokens, hidden, top-k, experts) that changes between the
points; when several change, the points are labelled by their whole shape. Needs Debian's python3-matplotlib.
"""

import argparse
import json
import sys

FIELDS = (("world_size", "W"), ("tokens", "Bs"), ("hidden", "H"), ("topk", "K"), ("experts", "M"))


def swept(points):
    """(axis label, x values, tick labels or None)."""
    varying = [(key, short) for key, short in FIELDS if len({p[key] for p in points}) > 1]
    if len(varying) == 1:
        key, short = varying[0]
        return f"{short} ({key.replace('_', ' ')})", [p[key] for p in points], None
    labels = [" ".join(f"{short}={p[key]}" for key, short in FIELDS) for p in points]
    return "point", list(range(len(points))), labels


def series(points, op, metric):
    """{runner: [(x index, value)]} of `metric` ("median_seconds" in ms, or "fraction_of_copy")."""
    out = {}
    for i, p in enumerate(points):
        for r in p["runners"]:
            value = r[op].get(metric, 0)
            if not value:
                continue
            out.setdefault(r["runner"], []).append((i, value * 1e3 if metric == "median_seconds" else value))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="the file `moedist bench --json` wrote")
    parser.add_argument("-o", "--output", default="bench.png", help="the image to write (png, svg, pdf)")
    a = parser.parse_args(argv)
    with open(a.json) as f:
        doc = json.load(f)
    points = doc["points"]
    if not points:
        print(f"plot.py: {a.json} has no points", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label, xs, ticks = swept(points)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for col, op in enumerate(("dispatch", "combine")):
        for row, (metric, ylabel, log) in enumerate((("median_seconds", "time per call (ms, median)", True),
                                                     ("fraction_of_copy", "fraction of copy bandwidth", False))):
            ax = axes[row][col]
            for runner, values in sorted(series(points, op, metric).items()):
                ax.plot([xs[i] for i, _ in values], [v for _, v in values], marker="o", label=runner)
            if log:
                ax.set_yscale("log")
            ax.set_title(f"{op}: {ylabel}")
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel(label)
                if ticks:
                    ax.set_xticks(xs)
                    ax.set_xticklabels(ticks, rotation=30, ha="right", fontsize=7)
    if ticks is None and label.startswith("W"):  # world sizes double from point to point
        for ax in axes.flat:
            ax.set_xscale("log", base=2)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"moedist bench ({doc.get('git_revision', '?')}, {doc['machine'].get('cpu', '')}, "
                 f"{doc['machine'].get('cores', '?')} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.output, dpi=110)
    print(f"plot.py: wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
