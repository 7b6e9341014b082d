"""Print the provider's runtime requirements (pyproject's ``[project] dependencies``, no extras), one per line.

The images install these constrained by ``requirements.lock`` (``pip install -r runtime.txt -c requirements.lock``):
the lock is compiled with the ``test`` and ``team`` extras for development, so installing it whole would put
pytest, moto, ruff and the Celery stack into every image. Constraining the runtime list by the lock gives the
same pinned versions as development for exactly the packages the provider needs. Standard library only: it runs
in each image's build stage before anything is installed.

Usage: ``python docker/runtime_requirements.py [pyproject.toml] > runtime.txt``
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def runtime_requirements(pyproject: Path) -> list[str]:
    """The requirement strings of ``[project] dependencies`` in ``pyproject``."""
    with pyproject.open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(runtime_requirements(path)))
