"""The frame every ops page has: its style, the action script, the header with the way back, and where links point."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import quote

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header{padding:10px 20px;border-bottom:1px solid #ddd;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0}main{padding:12px 20px 40px}section{margin:20px 0}
h2{font-size:16px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0b5cad}code{font-size:12px}.muted{color:#666}.bad{color:#b00020;font-weight:600}.good{color:#137333}
.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#e8f0fe;font-size:12px;margin-right:4px}
.state-success{color:#137333}.state-failed{color:#b00020}.state-running,.state-queued{color:#b06000}
button{font:inherit;padding:4px 12px;margin:2px;border:1px solid #888;border-radius:4px;background:#f8f8f8;cursor:pointer}
button:hover{background:#eee}#action-result{margin:8px 0;min-height:1.4em}#action-result.error{color:#b00020}
svg text{font-size:11px;fill:#333}svg .chart-title{font-size:13px;font-weight:600}.errors{color:#b00020}
"""

SCRIPT = """
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-url]");
  if (!button) return;
  const out = document.getElementById("action-result");
  const reason = document.getElementById("action-reason").value;
  out.className = ""; out.textContent = button.dataset.label + "...";
  try {
    const response = await fetch(button.dataset.url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify(reason ? {reason} : {})});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(response.status + ": " + (body.detail || response.statusText));
    out.textContent = button.dataset.label + ": done"; setTimeout(() => location.reload(), 600);
  } catch (err) { out.className = "error"; out.textContent = button.dataset.label + " refused: " + err.message; }
});
"""


@dataclass(frozen=True)
class Urls:
    """Where links point: this app's root (``.../mlops``) and Airflow's UI root (the api-server's)."""

    app: str
    airflow: str

    def pipeline(self, pipeline: str) -> str:
        return f"{self.app}/pipelines/{quote(pipeline)}"

    def report(self, pipeline: str, key: str) -> str:
        return f"{self.app}/reports/{quote(pipeline)}/{quote(key)}"

    def dag(self, dag_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id)}"

    def run(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def layout(title: str, body: str, urls: Urls, *, script: bool = False) -> str:
    """A whole page: header with the way back to the overview, ``body``, and the action script when asked."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><a href="{urls.app}/">All ML pipelines</a></header>'
        f"<main>{body}</main>" + (f"<script>{SCRIPT}</script>" if script else "") + "</body></html>"
    )


def message_page(title: str, text: str, urls: Urls) -> str:
    """A page that only says something (a DAG of no pipeline, an unknown pipeline)."""
    return layout(title, f"<p>{escape(text)}</p>", urls)
