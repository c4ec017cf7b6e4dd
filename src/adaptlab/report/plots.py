"""Plots of a study as PNG bytes (matplotlib, Agg backend): embedded as base64 in the HTML report."""
from __future__ import annotations

import base64
import io
import math
from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless; never opens a window
import matplotlib.pyplot as plt  # noqa: E402

_BLUE, _GREY, _GREEN, _RED, _ORANGE = "#1f5fa8", "#8a8f98", "#1b8a3a", "#b3261e", "#c76b00"


def to_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def f1_by_rung(rows: Sequence[dict[str, Any]], *, metric: str, chosen: Optional[str], ship_threshold: float) -> bytes:
    """Per-rung seed-mean F1 with its 95% band (bar = band), every seed as a dot, the ship threshold as a line."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(7.5, 0.65 * n + 1.6))
    for i, r in enumerate(rows):
        y = n - 1 - i
        color = _GREEN if r["rung"] == chosen else _BLUE
        if _finite(r.get("ci_low")) and _finite(r.get("ci_high")):
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, linewidth=7, alpha=0.35, solid_capstyle="butt")
        seeds = r.get("f1_by_seed") or []
        ax.scatter(seeds, [y] * len(seeds), s=18, color=_GREY, zorder=3, label="seed" if i == 0 else None)
        ax.scatter([r["mean"]], [y], s=70, marker="D", color=color, zorder=4, label="mean" if i == 0 else None)
        ax.annotate(f"{r['mean']:.4f}  (n={r['n_seeds']})", (r["mean"], y), textcoords="offset points",
                    xytext=(0, 9), ha="center", fontsize=8)
    ax.axvline(ship_threshold, color=_RED, linestyle="--", linewidth=1, label=f"ship threshold {ship_threshold:.2f}")
    ax.set_yticks(range(n))
    ax.set_yticklabels([r["rung"] + (" ✓" if r["rung"] == chosen else "") for r in reversed(rows)])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"test {metric} (bar: 95% band over seeds and test items)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    ax.set_title("F1 per rung", loc="left", fontsize=10)
    return to_png(fig)


def paired_differences(comparisons: Sequence[dict[str, Any]], *, margin: float) -> Optional[bytes]:
    """Each comparison's difference with its CI, against zero and the decision margin."""
    comps = [c for c in comparisons if _finite(c.get("diff"))]
    if not comps:
        return None
    n = len(comps)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * n + 1.4))
    for i, c in enumerate(comps):
        y = n - 1 - i
        color = _GREEN if c.get("beats_by_margin") else (_RED if c.get("worse_by_margin") else _GREY)
        if _finite(c.get("ci_low")) and _finite(c.get("ci_high")):
            ax.plot([c["ci_low"], c["ci_high"]], [y, y], color=color, linewidth=2)
        ax.scatter([c["diff"]], [y], color=color, zorder=3)
    ax.axvline(0, color="black", linewidth=0.8)
    for m in (margin, -margin):
        ax.axvline(m, color=_ORANGE, linestyle=":", linewidth=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{c['other']} − {c['simpler']}" for c in reversed(comps)], fontsize=8)
    ax.set_xlabel(f"difference of mean F1 (dotted: ±{margin:.2f} margin)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Paired comparisons", loc="left", fontsize=10)
    return to_png(fig)


def metric_of(name: str) -> str:
    """The quantity a stored series measures, as one axis names it (one metric per axis).

    Example:
        >>> metric_of("val_loss"), metric_of("val_f1"), metric_of("f1_gap"), metric_of("lr")
        ('loss', 'F1', 'gap', 'learning rate')
    """
    k = name.lower()
    for word, label in (("gap", "gap"), ("loss", "loss"), ("f1", "F1"), ("acc", "accuracy"), ("movement", "movement"),
                        ("drift", "movement"), ("norm", "norm")):
        if word in k:
            return label
    return "learning rate" if k in ("lr", "learning_rate") or k.endswith("_lr") else k.replace("_", " ")


def _series_points(ys: Any) -> list[tuple[float, float]]:
    xs = ys.get("x") if isinstance(ys, dict) else None
    ys = ys.get("y", []) if isinstance(ys, dict) else ys
    return [(x, y) for x, y in zip(xs or range(1, len(ys) + 1), ys) if _finite(y)]


def series_plot(curves: dict[str, dict[str, Any]], title: str, ylabel: str = "") -> Optional[bytes]:
    """Named series per rung: a list of values (x = position) or {"x": steps, "y": values}; None when empty.

    One panel per metric (loss, F1, gap ...): values of different scales never share an axis. Whole-number
    positions (steps, epochs) get whole-number ticks.
    """
    by_metric: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {}
    for rung, series in (curves or {}).items():
        for name, ys in series.items():
            pts = _series_points(ys)
            if len(pts) >= 2:
                by_metric.setdefault(metric_of(name), []).append((f"{rung}: {name.replace('_', ' ')}", pts))
    if not by_metric:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(by_metric), 1, figsize=(7.5, 2.4 * len(by_metric) + 0.6), sharex=True,
                             squeeze=False)
    whole = all(float(x).is_integer() for lines in by_metric.values() for _, pts in lines for x, _ in pts)
    for ax, (metric, lines) in zip(axes[:, 0], by_metric.items()):
        for label, pts in lines:
            ax.plot([a for a, _ in pts], [b for _, b in pts], marker=".", label=label, linewidth=1.3)
        ax.set_ylabel(ylabel or metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        if whole:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("step (or logged position)")
    axes[0, 0].set_title(title, loc="left", fontsize=10)
    return to_png(fig)


def learning_curve(points: Sequence[dict[str, Any]], *, metric: str) -> Optional[bytes]:
    """F1 against the fraction of training labels, one line per rung, bands as error bars."""
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for rung in sorted({p["rung"] for p in points}):
        pts = sorted((p for p in points if p["rung"] == rung), key=lambda p: p["n_labels"])
        xs = [p["n_labels"] for p in pts]
        ys = [p["mean"] for p in pts]
        lo = [p["mean"] - p["ci_low"] if _finite(p.get("ci_low")) else 0 for p in pts]
        hi = [p["ci_high"] - p["mean"] if _finite(p.get("ci_high")) else 0 for p in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=rung)
    ax.set_xscale("log")
    ax.set_xlabel("training labels (log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("Learning curve", loc="left", fontsize=10)
    return to_png(fig)


def slices_plot(slices: Sequence[dict[str, Any]], overall: Optional[float]) -> Optional[bytes]:
    if not slices:
        return None
    rows = sorted(slices, key=lambda s: s["f1"])[:15]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(rows) + 1.4))
    ax.barh([f"{s['slice']} (n={s['n']})" for s in reversed(rows)], [s["f1"] for s in reversed(rows)], color=_BLUE)
    if overall is not None:
        ax.axvline(overall, color=_RED, linestyle="--", linewidth=1, label=f"overall {overall:.4f}")
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel("F1 on the slice")
    ax.set_xlim(0, 1)
    ax.set_title("Worst slices", loc="left", fontsize=10)
    return to_png(fig)


def movement_plot(per_layer: dict[str, dict[str, float]]) -> Optional[bytes]:
    """Relative weight change per backbone layer (mean over seeds), one bar group per rung."""
    # All zero (or no finite value): the bars would be an empty chart; the report says why instead.
    per_layer = {r: v for r, v in per_layer.items() if any(_finite(x) and x != 0 for x in v.values())}
    if not per_layer:
        return None
    units = list(dict.fromkeys(u for v in per_layer.values() for u in v))
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.8 / len(per_layer)
    for j, (rung, vals) in enumerate(per_layer.items()):
        ax.bar([i + j * width for i in range(len(units))], [100 * vals.get(u, 0.0) for u in units], width=width,
               label=rung)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(units))])
    ax.set_xticklabels(units, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("relative weight change (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Backbone movement per layer (mean over seeds)", loc="left", fontsize=10)
    return to_png(fig)
