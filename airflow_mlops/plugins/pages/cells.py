"""The small HTML pieces the pages' tables share: a table, code, versions, run links and states, numbers and times.

Each escapes what it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops.plugins.pages.layout import Urls


def table(head: Sequence[str], rows: Sequence[str]) -> str:
    """A table of ``head`` (escaped here) over ``rows`` (each a rendered ``<tr>``)."""
    return (
        f"<table><thead><tr>{''.join(f'<th>{escape(h)}</th>' for h in head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def row(cells: Iterable[str], **data: str) -> str:
    """A ``<tr>`` of ``cells`` (rendered already), with a ``data-<name>`` attribute per keyword (escaped here)."""
    attributes = "".join(f' data-{name}="{escape(value)}"' for name, value in data.items())
    return f"<tr{attributes}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def code(value: Any) -> str:
    return f"<code>{escape(str(value))}</code>" if value is not None else ""


def version_since(version: str | None, since: str | None) -> str:
    """A version and since when it holds its alias; "none" without one."""
    if not version:
        return '<span class="muted">none</span>'
    return f'{code(version)} <span class="muted">since {escape(short_time(since))}</span>' if since else code(version)


def run_link(dag_id: str, run_id: str | None, urls: Urls) -> str:
    """A link to the run's page in Airflow's UI (the whole window, not the plugin's frame); empty without a run."""
    return f'<a target="_top" href="{urls.run(dag_id, run_id)}">{escape(run_id)}</a>' if run_id else ""


def state(value: str) -> str:
    """A DAG run's state, coloured by its class."""
    return f'<span class="state-{escape(value)}">{escape(value)}</span>'


def number(value: float | None) -> str:
    if value is None:
        return ""
    return escape(f"{value:d}" if isinstance(value, int) else f"{value:.4g}")


def percent(weight: float | None) -> str:
    return "" if weight is None else escape(f"{weight:g}%")


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def short_time(value: str | None) -> str:
    """An ISO time from a file as :func:`when` writes it; the text itself when it is no ISO time."""
    if not value:
        return ""
    try:
        return when(datetime.fromisoformat(value))
    except ValueError:
        return value
