"""A Hydra callback that leaves a summary table of every job's metrics at the sweep dir."""

import csv
import io
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lm_music import run_folder
from lm_music.io import write_text_atomic

log = logging.getLogger(__name__)


def summarize_sweep(sweep_dir: str | Path) -> list[dict]:
    """One row per job folder under `sweep_dir`: its number, its overrides, and its metrics.json."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/metrics.json"), key=lambda p: _job_number(p.parent)):
        job_dir = metrics_file.parent
        row = {"job": job_dir.name, "overrides": " ".join(run_folder.overrides(job_dir) or [])}
        row.update({k: v for k, v in run_folder.metrics(job_dir).items() if "/" in k})
        rows.append(row)
    return rows


def _job_number(job_dir: Path) -> tuple:
    return (0, int(job_dir.name)) if job_dir.name.isdigit() else (1, job_dir.name)


def write_summary(sweep_dir: str | Path, rows: list[dict]) -> Path:
    columns = ["job", "overrides"] + sorted({k for row in rows for k in row} - {"job", "overrides"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    path = Path(sweep_dir) / "summary.csv"
    write_text_atomic(path, buffer.getvalue())
    return path


class SweepSummary(Callback):
    """At the end of a multirun, write `summary.csv` (one row per job) at the sweep dir and log it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The Optuna sweeper opens its SQLite study under the log dir before any job has made it.
        Path(config.paths.log_dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarize_sweep(sweep_dir)
        if not rows:
            log.warning("no job of the sweep in %s wrote metrics.json: no summary", sweep_dir)
            return
        path = write_summary(sweep_dir, rows)
        log.info("sweep summary (%d jobs): %s", len(rows), path)
        for row in rows:
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "job"}
            log.info("job %s: %s", row["job"], shown)
