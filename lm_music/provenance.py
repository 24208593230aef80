"""Where a run's code came from: the commit recorded in metrics.json and the trackers' tags."""

import subprocess
from pathlib import Path


def source_commit() -> str | None:
    """The git commit of the lm_music source that ran (with `+dirty` for uncommitted changes), if a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")
