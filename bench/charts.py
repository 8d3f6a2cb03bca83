"""The bench results as charts, `python3 -m bench.charts [issuance] [million] [openloop]` (all by
default), run at the end of bench/run.sh, bench/speed/million.sh and bench/openloop/run.py. Reads
bench/results/issuance.md (the tables bench/run.py writes), million.csv (bench/speed/million.py) and
openloop.csv (bench/openloop/run.py), writes beside them issuance-rate.png, issuance-latency.png,
million.png and openloop.png. Needs matplotlib, which those scripts install.

It does not import bench.lib, which needs DATABASE_URL: the charts need no database."""
import csv
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
COLOURS = ["tab:red", "tab:purple", "tab:brown", "tab:blue", "tab:green", "tab:orange", "tab:pink"]
THOUSANDS = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")


def read(name):
    with open(os.path.join(RESULTS, name)) as f:
        return f.read()


def run_date(text, pattern):
    """The date and time of the run, as the results file gives it (`pattern` captures it)."""
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1) if match else "date unknown"


def issuance_levels(text):
    """The tables under "## SQL level (pgbench, ...)" and "## HTTP (wrk, ...)" as
    {"SQL level (pgbench)": {strategy: [row, ...]}, ...}, each row a dict: clients, rate, unit,
    p50, p99, broken (the audit said BROKEN: the run over-issued, its rate is no result)."""
    levels, strategies = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
            name, _, detail = heading.partition(" (")
            strategies = levels.setdefault(f"{name} ({detail.split(',')[0]})", {}) \
                if heading.startswith(("SQL level", "HTTP")) else None
        elif strategies is not None and line.startswith("| ") and not line.startswith("| strategy |"):
            name, clients, rate, p50, p99, audit = (cell.strip() for cell in line.strip("|").rsplit("|", 5))
            value, unit = rate.split(" ", 1)
            strategies.setdefault(name, []).append(dict(
                clients=int(clients), rate=float(value.replace(",", "")), unit=unit,
                p50=float(p50), p99=float(p99), broken=audit.startswith("BROKEN")))
    return levels


def plot_series(ax, rows, key, colour, marker="o", linestyle="-"):
    """One strategy's `key` against clients: a line, filled markers for clean runs and hollow ones,
    drawn on top, for BROKEN runs."""
    ax.plot([row["clients"] for row in rows], [row[key] for row in rows], color=colour, linestyle=linestyle)
    for row in rows:
        ax.plot(row["clients"], row[key], color=colour, marker=marker, markersize=8 if row["broken"] else 7,
                markerfacecolor="white" if row["broken"] else colour, markeredgewidth=2 if row["broken"] else 1,
                zorder=3 if row["broken"] else 2)


def clients_axis(ax, clients, title):
    ax.set_xscale("log", base=2)
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.minorticks_off()
    ax.set_xlabel("concurrent clients")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=11)


def issuance_figure(levels, title, ylabel, plot, legend_extra):
    """One panel per level, side by side, `plot`(ax, rows, colour) drawing each strategy; the legend
    of each level under its panel. A strategy keeps its colour across levels (by its first word:
    "group issuance ..." at SQL level and over HTTP); the references (rows in commits/s or answers/s,
    no issuance) are grey."""
    figure, axes = plt.subplots(1, len(levels), figsize=(14, 7.5), sharey=True)
    colours = {}
    for ax, (level, strategies) in zip(axes, levels.items()):
        handles = []
        for name, rows in strategies.items():
            reference = rows[0]["unit"] != "issued/s"
            colour = "grey" if reference else colours.setdefault(name.split()[0], COLOURS[len(colours) % len(COLOURS)])
            plot(ax, rows, colour)
            label = f"{name}, {rows[0]['unit']}" if reference else name
            handles.append(Line2D([], [], color=colour, marker="o", label=label))
        clients_axis(ax, sorted({row["clients"] for rows in strategies.values() for row in rows}), level)
        ax.legend(handles=handles + legend_extra, loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=9,
                  frameon=False)
    axes[0].set_ylabel(ylabel)
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    return figure


def broken_key(note):
    return Line2D([], [], color="black", marker="o", markerfacecolor="white", markeredgewidth=2, linestyle="none",
                  label=f"hollow marker: audit BROKEN (over-issued), {note}")


def issuance_charts():
    text = read("issuance.md")
    levels = issuance_levels(text)
    source = f"bench/results/issuance.md, run {run_date(text, r'^Run (.+? UTC)')}"
    save(issuance_figure(levels, f"Issued tickets per second by strategy and concurrency\n{source}",
                         "issued tickets per second (log scale)",
                         lambda ax, rows, colour: plot_series(ax, rows, "rate", colour),
                         [broken_key("its rate is no valid result")]),
         "issuance-rate.png")

    def latency(ax, rows, colour):
        plot_series(ax, rows, "p50", colour)
        plot_series(ax, rows, "p99", colour, marker="^", linestyle="--")

    percentiles = [Line2D([], [], color="black", marker="o", label="p50 (solid)"),
                   Line2D([], [], color="black", marker="^", linestyle="--", label="p99 (dashed)")]
    save(issuance_figure(levels, f"Latency p50 and p99: per transaction at SQL level (pgbench), per request over "
                                 f"HTTP (wrk)\n{source}",
                         "latency, ms (log scale)", latency, percentiles + [broken_key("latency as measured")]),
         "issuance-latency.png")


def million_chart():
    with open(os.path.join(RESULTS, "million.csv")) as f:
        series = [(float(row["seconds"]), int(row["issued"])) for row in csv.DictReader(f)]
    seconds, issued = zip(*series)
    date = run_date(read("million.md"), r"^## (.+? UTC)")
    figure, ax = plt.subplots(figsize=(10, 5.5))
    ax.plot(seconds, issued, color="tab:green", linewidth=2)
    ax.set_xlim(0, seconds[-1] * 1.02)
    ax.set_ylim(0, issued[-1] * 1.05)
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.set_xlabel("seconds since the load started (wrk -t1 -c256, every request a new user)")
    ax.set_ylabel("tickets issued (coupons.issued_count, read every 0.25 s)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"The million-ticket sale over HTTP: {issued[-1]:,} issued in {seconds[-1]:.1f} s "
                 f"({issued[-1] / seconds[-1]:,.0f} issued/s)\nbench/results/million.csv, run {date}", fontsize=12)
    figure.tight_layout()
    save(figure, "million.png")


def openloop_chart():
    """p99 against the arrival rate, constant answer and issuance, one instance and two, with the SLO."""
    path = os.path.join(RESULTS, "openloop.csv")
    if not os.path.exists(path):   # bench/run.sh with BENCH_SKIP_OPENLOOP=1 before any open-loop run
        print("no bench/results/openloop.csv: bench/openloop/run.sh writes it; openloop.png not drawn")
        return
    with open(path) as f:
        rows = list(csv.DictReader(f))
    date = run_date(read("openloop.md"), r"^Run (.+? UTC)")
    figure, ax = plt.subplots(figsize=(10, 7))
    colours = {"constant": "grey", "issue": "tab:green"}
    labels = {"constant": "constant answer (GET /healthz)", "issue": "issuance (every arrival a new user)"}
    styles = {"1": ("-", "o"), "2": ("--", "s")}
    for instances in sorted({row["instances"] for row in rows}, key=int):
        line, marker = styles.get(instances, (":", "^"))
        for target in ("constant", "issue"):
            series = [row for row in rows if row["instances"] == instances and row["target"] == target]
            if not series:
                continue
            rates = [int(row["rate"]) for row in series]
            ax.plot(rates, [float(row["p99"]) for row in series], color=colours[target], linestyle=line,
                    marker=marker, markersize=7,
                    label=f"{labels[target]}, {instances} instance{'s' if instances != '1' else ''}")
            for row in series:
                # Hollow: the step lost arrivals or answers, so its p99 is not the whole story.
                if int(row["failed"]) or int(row["dropped"]):
                    ax.plot(int(row["rate"]), float(row["p99"]), color=colours[target], marker=marker, markersize=8,
                            markerfacecolor="white", markeredgewidth=2, zorder=3)
    ax.axhline(100, color="tab:red", linewidth=1, linestyle=":", label="p99 100 ms, the original design's SLO")
    ax.plot([], [], color="black", marker="o", markerfacecolor="white", markeredgewidth=2, linestyle="none",
            label="hollow marker: failed requests or dropped arrivals")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.xaxis.set_major_formatter(THOUSANDS)
    ax.set_xticks(sorted({int(row["rate"]) for row in rows}))
    ax.set_xlabel("arrivals per second (k6 constant-arrival-rate; warm-up not counted)")
    ax.set_ylabel("p99 latency, ms (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    ax.set_title(f"Open loop: p99 against the arrival rate\nbench/results/openloop.md, run {date}", fontsize=12)
    figure.tight_layout()
    save(figure, "openloop.png")


def save(figure, name):
    path = os.path.join(RESULTS, name)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"written to {os.path.relpath(path)}")


CHARTS = {"issuance": issuance_charts, "million": million_chart, "openloop": openloop_chart}


def main():
    for name in sys.argv[1:] or CHARTS:
        CHARTS[name]()


if __name__ == "__main__":
    sys.exit(main())
