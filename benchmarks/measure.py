"""What the benchmarks share: running one side in a fresh process (so its peak RSS is its own) and reading it."""

from __future__ import annotations

import json
import resource
import subprocess
import sys


def in_process(script: str, args: list[str]) -> dict:
    """Run ``script`` with ``args`` in a new interpreter; its last stdout line is the JSON result it prints."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
