"""Small self-contained HTML pages for reports and model cards (no external assets)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}"
    ".ok{color:#1a7f37}.bad{color:#b42318}code{background:#f6f8fa;padding:1px 4px}"
)


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body or f'<tr><td colspan={len(headers)}>none</td></tr>'}</table>"


def page(title: str, status: tuple[bool, str], sections: Iterable[tuple[str, str]], *, intro: str = "") -> str:
    """A complete HTML document; ``sections`` are (heading, already-rendered HTML) pairs."""
    ok, text = status
    parts = "".join(f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p>{html.escape(intro)}</p><h2 class="{"ok" if ok else "bad"}">{html.escape(text)}</h2>{parts}</body></html>\n'
    )
