"""Small inline SVG charts rendered on the server: no JavaScript library, nothing fetched.

Colours come from CSS classes in static/app.css, so the charts follow the page's theme.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
from markupsafe import Markup, escape

from inspector.pipeline.thresholds import Labelled, Operating

Scale = Callable[[float], float]  # data value → SVG coordinate
W, H = 420, 240
CURVE_POINTS = 400  # a curve needs no more points than its chart has pixels across
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 34


def _frame(title: str, x_label: str, y_label: str, body: list[str], ticks: list[str]) -> Markup:
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}"/>',
        *ticks,
        *body,
        f'<text class="axis-label" x="{(LEFT + W - RIGHT) / 2}" y="{H - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text class="axis-label" x="12" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">{escape(y_label)}</text>',
        "</svg>",
    ]
    return Markup("".join(parts))


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def _ticks(x: Scale, y: Scale, xs: list[tuple[float, str]], ys: list[tuple[float, str]]) -> list[str]:
    out = []
    for v, text in xs:
        at = x(v)
        anchor = "start" if at <= LEFT else "end" if at >= W - RIGHT else "middle"  # keep edge labels inside
        out.append(
            f'<text class="tick" x="{at:.1f}" y="{H - BOTTOM + 13}" text-anchor="{anchor}">'
            f"{escape(text)}</text>"
        )
    for v, text in ys:
        out.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(text)}</text>'
        )
    return out


def _count_ticks(top: int) -> list[tuple[float, str]]:
    """Whole-number ticks at zero, half way and the top (no "0.5 frames")."""
    return [(v, str(v)) for v in sorted({0, top // 2, top})]


def histogram(labelled: Labelled, marks: dict[str, float], bins: int = 24) -> Markup:
    """Score histograms of normal and anomaly labels, overlaid, with threshold lines."""
    scores, anomalous = labelled.scores, labelled.anomalous
    lo = float(min(scores.min(), *marks.values()))
    hi = float(max(scores.max(), *marks.values()))
    width = (hi - lo) / bins or 1.0
    index = np.minimum(((scores - lo) / width).astype(np.int64), bins - 1)
    counts = {
        label: np.bincount(index[anomalous == (label == "anomaly")], minlength=bins).tolist()
        for label in ("normal", "anomaly")
    }
    top = max(max(c) for c in counts.values()) or 1
    x = _scale(lo, lo + width * bins, LEFT, W - RIGHT)
    y = _scale(0, top, H - BOTTOM, TOP)
    body = []
    for label, series in counts.items():
        for i, n in enumerate(series):
            if n:
                x0, x1 = x(lo + i * width), x(lo + (i + 1) * width)
                body.append(
                    f'<rect class="bar {label}" x="{x0:.1f}" y="{y(n):.1f}" '
                    f'width="{max(x1 - x0 - 1, 1):.1f}" height="{y(0) - y(n):.1f}">'
                    f"<title>{label}: {n}</title></rect>"
                )
    for name, value in marks.items():
        body.append(
            f'<line class="mark {escape(name)}" x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{TOP}" '
            f'y2="{H - BOTTOM}"><title>{escape(name)} threshold {value:.4g}</title></line>'
        )
    ticks = _ticks(
        x,
        y,
        [(lo + (hi - lo) * f, f"{lo + (hi - lo) * f:.3g}") for f in (0, 0.5, 1)],
        _count_ticks(top),
    )
    return _frame("Score histogram by label", "score", "frames", body, ticks)


def curve(points: list[Operating], kind: str, marks: dict[str, Operating]) -> Markup:
    """The ROC (kind "roc": false-positive rate vs recall) or PR (recall vs precision) curve."""

    def xy(p: Operating) -> tuple[float, float]:
        return (p.fpr, p.recall) if kind == "roc" else (p.recall, p.precision)

    x = _scale(0, 1, LEFT, W - RIGHT)
    y = _scale(0, 1, H - BOTTOM, TOP)
    path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in map(xy, points))
    body = [f'<polyline class="line" points="{path}"/>']
    for name, p in marks.items():
        a, b = xy(p)
        body.append(
            f'<circle class="mark {escape(name)}" cx="{x(a):.1f}" cy="{y(b):.1f}" r="5">'
            f"<title>{escape(name)} threshold {p.threshold:.4g}</title></circle>"
        )
    grid = [(f, f"{f:.1f}") for f in (0, 0.5, 1)]
    labels = ("false-positive rate", "recall") if kind == "roc" else ("recall", "precision")
    title = "ROC curve" if kind == "roc" else "Precision-recall curve"
    return _frame(title, *labels, body, _ticks(x, y, grid, grid))


def hourly_bars(counts: list[tuple[datetime, int]]) -> Markup:
    """Frames registered per hour, one bar per hour, oldest on the left."""
    top = max((n for _, n in counts), default=0) or 1
    x = _scale(0, max(len(counts), 1), LEFT, W - RIGHT)
    y = _scale(0, top, H - BOTTOM, TOP)
    body = [
        f'<rect class="bar hour" x="{x(i):.1f}" y="{y(n):.1f}" width="{max(x(i + 1) - x(i) - 1, 1):.1f}" '
        f'height="{y(0) - y(n):.1f}"><title>{hour:%H}:00 UTC: {n}</title></rect>'
        for i, (hour, n) in enumerate(counts)
    ]
    xs = [(i + 0.5, f"{hour:%H}h") for i, (hour, _) in enumerate(counts) if i % 4 == 0]
    ticks = _ticks(x, y, xs, _count_ticks(top))
    return _frame("Frames per hour", "hour (UTC)", "frames", body, ticks)
