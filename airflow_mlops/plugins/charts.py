"""Inline SVG line charts for the ops pages: plain strings, no script, no library."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TypeVar

T = TypeVar("T")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


@dataclass(frozen=True)
class Series:
    """One line: its name (legend and tooltips) and its (x, y) points; None values are gaps."""

    name: str
    points: Sequence[tuple[float, float | None]]
    color: str = PALETTE[0]
    dashed: bool = False


@dataclass(frozen=True)
class Band:
    """A shaded range: its name (legend and tooltip) and its (x, low, high) points; a None bound is a gap."""

    name: str
    points: Sequence[tuple[float, float | None, float | None]]
    color: str = "#7f7f7f"


@dataclass(frozen=True)
class Panel:
    """One plot area: a title, its lines, an optional horizontal limit line, shaded bands, how x and y values read,
    and whether the y axis starts at zero (else at the values' own range)."""

    title: str
    series: Sequence[Series]
    limit: float | None = None
    limit_label: str = ""
    x_label: Callable[[float], str] = lambda x: f"{x:g}"
    y_label: Callable[[float], str] = lambda y: f"{y:.3g}"
    bands: Sequence[Band] = ()
    from_zero: bool = True


BAND_OPACITY = ' fill-opacity="0.25"'
PANEL_W, PANEL_H, PAD_L, PAD_R, PAD_T, PAD_B, LEGEND_ROW = 440, 200, 56, 16, 26, 34, 16


def svg_chart(svg_id: str, title: str, panels: Sequence[Panel], *, columns: int = 2, panel_width: int = PANEL_W) -> str:
    """An ``<svg id=svg_id>`` holding ``panels`` in a grid of ``columns``, each ``panel_width`` wide; ``title`` is its
    accessible name. Each panel's legend wraps onto as many rows as its series need."""
    columns = max(1, min(columns, len(panels)))
    heights = [PANEL_H + LEGEND_ROW * (len(_legend(p, panel_width)) - 1) for p in panels] or [PANEL_H]
    row_heights = [max(heights[i : i + columns]) for i in range(0, len(heights), columns)]
    tops = [sum(row_heights[:r]) for r in range(len(row_heights))]
    body = "".join(
        f'<g transform="translate({(i % columns) * panel_width},{tops[i // columns]})">{_panel(p, panel_width, row_heights[i // columns])}</g>'
        for i, p in enumerate(panels)
    )
    width, height = panel_width * columns, sum(row_heights)
    return (
        f'<svg id="{escape(svg_id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _legend(panel: Panel, width: int) -> list[list[tuple[int, Series | Band]]]:
    """The legend's rows: each series with its x offset, wrapped within ``width``."""
    rows: list[list[tuple[int, Series | Band]]] = [[]]
    x = PAD_L
    for series in (*panel.bands, *panel.series):
        item = 24 + 7 * len(series.name)
        if rows[-1] and x + item > width - PAD_R:
            rows.append([])
            x = PAD_L
        rows[-1].append((x, series))
        x += item
    return rows


def _panel(panel: Panel, width: int, height: int) -> str:
    points = [(x, y) for s in panel.series for x, y in s.points if y is not None]
    points += [(x, y) for b in panel.bands for x, low, high in b.points for y in (low, high) if y is not None]
    legend = _legend(panel, width)
    top = PAD_T + LEGEND_ROW * len(legend)
    inner_w, inner_h = width - PAD_L - PAD_R, height - top - PAD_B
    parts = [
        f'<text x="{PAD_L}" y="14" class="chart-title">{escape(panel.title)}</text>',
        f'<rect x="{PAD_L}" y="{top}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#ccc"/>',
    ]
    for row, items in enumerate(legend):
        y = PAD_T + LEGEND_ROW * row
        parts.extend(
            f'<rect x="{x}" y="{y - 4}" width="10" height="10" fill="{s.color}"{BAND_OPACITY if isinstance(s, Band) else ""}/>'
            f'<text x="{x + 14}" y="{y + 5}">{escape(s.name)}</text>'
            for x, s in items
        )
    if not points:
        parts.append(f'<text x="{PAD_L + 8}" y="{top + 20}" class="chart-empty">no data yet</text>')
        return "".join(parts)
    xs = [x for x, _ in points]
    ys = [y for _, y in points] + ([panel.limit] if panel.limit is not None else [])
    x0, x1 = min(xs), max(xs)
    if panel.from_zero:
        y0, y1 = min(0.0, min(ys)), max(ys)
        y1 = y1 * 1.1 if y1 > y0 else y0 + 1
    else:  # the values' own range, a tenth wider each side
        pad = (max(ys) - min(ys)) / 10 or abs(max(ys)) / 10 or 1.0
        y0, y1 = min(ys) - pad, max(ys) + pad
    x1 = x1 if x1 > x0 else x0 + 1

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * inner_w

    def sy(y: float) -> float:
        return top + inner_h - (y - y0) / (y1 - y0) * inner_h

    for tick in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{PAD_L - 4}" y="{sy(tick) + 4:.1f}" text-anchor="end">{escape(panel.y_label(tick))}</text>')
    for tick, anchor in ((x0, "start"), (max(xs), "end")):
        parts.append(
            f'<text x="{sx(tick):.1f}" y="{height - PAD_B + 16}" text-anchor="{anchor}">{escape(panel.x_label(tick))}</text>'
        )
    for band in panel.bands:
        for run in _runs([(x, None if low is None or high is None else (low, high)) for x, low, high in band.points]):
            outline = [(x, high) for x, (_, high) in run] + [(x, low) for x, (low, _) in reversed(run)]
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in outline)
            parts.append(
                f'<polygon class="band" fill="{band.color}"{BAND_OPACITY} stroke="none" points="{path}">'
                f"<title>{escape(band.name)}</title></polygon>"
            )
    for series in panel.series:
        label = escape(series.name)
        for run in _runs(series.points):
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
            dash = ' stroke-dasharray="3 3"' if series.dashed else ""
            parts.append(f'<polyline fill="none" stroke="{series.color}" stroke-width="2"{dash} points="{path}"/>')
            parts.extend(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{series.color}">'
                f"<title>{label}: {escape(panel.y_label(y))} at {escape(panel.x_label(x))}</title></circle>"
                for x, y in run
            )
    if panel.limit is not None:
        y = sy(panel.limit)
        parts.append(
            f'<line class="limit" x1="{PAD_L}" x2="{PAD_L + inner_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#000" '
            f'stroke-dasharray="6 4"><title>{escape(panel.limit_label)}</title></line>'
            f'<text x="{PAD_L + inner_w - 2}" y="{y - 4:.1f}" text-anchor="end">{escape(panel.limit_label)}</text>'
        )
    return "".join(parts)


def _runs(points: Sequence[tuple[float, T | None]]) -> list[list[tuple[float, T]]]:
    """The stretches of ``points`` between gaps (None values)."""
    runs: list[list[tuple[float, T]]] = [[]]
    for x, y in points:
        if y is None:
            runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]
