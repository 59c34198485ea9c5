"""Draws the comparison suite's results (out/bench.json, from mpp-compare) as one PNG.

    python3 benchmarks/plot.py out/bench.json out/bench.png

Panels: scaling with the number of processes (wall time and PSS of the dataset scan,
ops/s of the word count), then queue throughput and pool throughput per variant. Error
bars span min..max of the runs; the markers are medians. Headless (Agg backend).
"""
import collections
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["1 process", "mpp", "mpp (local + merge)", "mpp Pipe", "isolated (pipes)", "python mp",
         "python mp (local + merge)", "python mp (per word)", "python mp Queue", "python mp Pipe", "mpp (Python module)", "mpp, C++ producer",
         "boost.interprocess", "fork-inherited (COW)"]


COLORS = {}


def color(variant):
    """The same colour for a variant in every panel."""
    if variant not in COLORS:
        # More colours than variants, so no two variants of a panel share one.
        palette = (list(plt.get_cmap("tab10").colors) + [(0.0, 0.0, 0.0), (0.6, 0.6, 0.0)] +
                   list(plt.get_cmap("Dark2").colors) + list(plt.get_cmap("Set1").colors))
        i = ORDER.index(variant) if variant in ORDER else len(ORDER) + len(COLORS)
        COLORS[variant] = palette[i % len(palette)]
    return COLORS[variant]


def variant_order(names):
    return sorted(names, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))


def figure(result, key, scale):
    f = result["figures"].get(key)
    if result["status"] != "ok" or f is None:
        return None
    return f["median"] / scale, f["min"] / scale, f["max"] / scale


def scaling_panel(ax, cases, key, scale, ylabel, title, size_param):
    """Lines over the worker count for the cases of the most common size."""
    sizes = collections.Counter(c["params"].get(size_param) for c in cases)
    if not sizes:
        return False
    size = sizes.most_common(1)[0][0]
    chosen = sorted((c for c in cases if c["params"].get(size_param) == size),
                    key=lambda c: c["params"]["workers"])
    series = collections.defaultdict(list)
    for c in chosen:
        for r in c["results"]:
            v = figure(r, key, scale)
            if v:
                series[r["variant"]].append((c["params"]["workers"], *v))
    if not series:
        return False
    for variant in variant_order(series):
        pts = series[variant]
        xs = [p[0] for p in pts]
        med = [p[1] for p in pts]
        lo = [p[1] - p[2] for p in pts]
        hi = [p[3] - p[1] for p in pts]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=variant,
                    color=color(variant))
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8])
    ax.set_xticklabels(["1", "2", "4", "8"])
    ax.set_yscale("log")
    ax.set_xlabel("processes")
    ax.set_ylabel(ylabel)
    ax.set_title(title.format(size=chosen[0]["name"].split(",")[0]), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return True


def bars_panel(ax, cases, key, scale, ylabel, title):
    """Grouped bars: one group per case, one bar per variant."""
    variants = variant_order({r["variant"] for c in cases for r in c["results"]
                              if figure(r, key, scale)})
    if not variants:
        return False
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        xs, med, lo, hi = [], [], [], []
        for j, c in enumerate(cases):
            for r in c["results"]:
                v = figure(r, key, scale) if r["variant"] == variant else None
                if v:
                    xs.append(j + i * width - 0.4 + width / 2)
                    med.append(v[0])
                    lo.append(v[0] - v[1])
                    hi.append(v[2] - v[0])
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=variant, color=color(variant))
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c["name"] for c in cases], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return True


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        doc = json.load(f)
    by = collections.defaultdict(list)
    for c in doc["cases"]:
        by[c["workload"]].append(c)
    fig, axes = plt.subplots(2, 4, figsize=(21, 9))
    axes = axes.flatten()
    drawn = [
        scaling_panel(axes[0], by["scan"], "wall", 1e-3, "wall time (ms)",
                      "Dataset scan ({size}): wall time", "bytes"),
        scaling_panel(axes[1], by["scan"], "pss", 2**20, "PSS of all processes (MiB)",
                      "Dataset scan ({size}): memory", "bytes"),
        scaling_panel(axes[2], by["wordcount"], "ops", 1, "words/s",
                      "Word count ({size}): throughput", "words"),
        bars_panel(axes[3], [c for c in by["queue"] if c["params"].get("kind") == "throughput"],
                   "msgs", 1, "messages/s", "Queue: producer → consumer throughput"),
        bars_panel(axes[4], [c for c in by["queue"] if c["params"].get("kind") == "latency"],
                   "rtt", 1e-6, "round trip (µs)", "Queue: round-trip latency (lower is better)"),
        bars_panel(axes[5], by["pool"], "tasks", 1, "tasks/s", "Pool: throughput"),
        # The Python module's section: ops/s (dict) or msgs/s (queues), from Python.
        bars_panel(axes[6], by["python"], "rate", 1, "ops/s or msgs/s",
                   "Python: mpp module vs multiprocessing"),
    ]
    axes[7].set_axis_off()
    for ax, ok in zip(axes, drawn):
        if not ok:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    m = doc["machine"]
    fig.suptitle(f"mpp comparison suite — {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, "
                 f"{m['python']}, {m['date']}, load average {m.get('load_average', 0):.1f}; markers: median of {doc['config']['reps']} runs, "
                 f"bars: min–max", fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
