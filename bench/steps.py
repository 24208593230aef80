"""Training speed of any configuration, through train.py itself: real frames (or characters) per second.

    python bench/steps.py [--steps 20] [--warmup 3] [--threads 2] -- experiment=nottingham model.head=nade ...

Runs `train.py OVERRIDES trainer.max_steps=warmup+steps` with no validation and no test, and a callback added
from the command line (`+callbacks.step_timer`, the class below) that times every training batch and counts
the positions it predicts (length - 1 per sequence). Prints one JSON line: the median over the timed batches
of positions / seconds, and the median step time. To compare two commits, run it alternately in a checkout
of each. `--threads` sets OMP_NUM_THREADS with OMP_WAIT_POLICY=PASSIVE (see bench/throughput.py);
`bench/threads.py` compares thread settings.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pytorch_lightning as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(pl.Callback):
    """Appends `[seconds, predicted positions]` of every training batch to the JSON list at `path`."""

    def __init__(self, path: str) -> None:
        self.path, self.rows = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        positions = int((batch["lengths"] - 1).clamp(min=0).sum())
        self.rows.append([time.perf_counter() - self.start, positions])
        Path(self.path).write_text(json.dumps(self.rows))


def timed_command(overrides: list[str], max_steps: int, run_dir: Path, times: Path) -> list[str]:
    """The train.py command that trains `max_steps` batches (no validation, test or tracker) and writes each
    batch's `[seconds, positions]` to `times`."""
    return [
        sys.executable,
        "train.py",
        *overrides,
        f"trainer.max_steps={max_steps}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "test=false",
        "~logger",
        f"hydra.run.dir={run_dir}",
        "+callbacks.step_timer._target_=bench.steps.StepTimer",
        f"+callbacks.step_timer.path={times}",
    ]


def read_times(times: Path) -> list[list[float]]:
    """The rows a StepTimer has written so far (none before the first batch, or mid-write)."""
    try:
        return json.loads(times.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def speed(rows: list[list[float]]) -> dict:
    """Median positions per second and median step time of timed batches."""
    return {
        "positions_per_s": round(statistics.median(n / s for s, n in rows)),
        "step_seconds": round(statistics.median(s for s, _ in rows), 4),
        "timed_steps": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20, help="timed training batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of train.py")
    parser.add_argument("overrides", nargs="*", help="train.py overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp) / "steps.json"
        command = timed_command(args.overrides, args.warmup + args.steps, Path(tmp) / "run", times)
        env = {
            "OMP_WAIT_POLICY": "PASSIVE",
            **os.environ,
            "OMP_NUM_THREADS": str(args.threads),
            "PYTHONPATH": str(ROOT),
        }
        out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"failed: {' '.join(command)}\n{out.stderr[-3000:]}")
        rows = read_times(times)[args.warmup :]
    row = {
        "benchmark": "training_steps",
        "overrides": args.overrides,
        **speed(rows),
        "omp_num_threads": args.threads,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "date": date.today().isoformat(),
        **hardware(),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
