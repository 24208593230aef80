"""What every benchmark script shares: the machine and the software it prints beside its figures, and how it runs the project's commands."""

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        if match := re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M):
            cpu = match.group(1).strip()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "rev-parse", "--short", "HEAD"]
        info["commit"] = subprocess.run(git, capture_output=True, text=True, check=True).stdout.strip()
    return info


def run_python(command: list[str]) -> None:
    """Run `python COMMAND...` in the repository; a failure ends the bench with the command and its stderr's tail."""
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")


def train_for(minutes: int, threads: int, run_dir: Path, overrides: list[str]) -> dict:
    """`train.py OVERRIDES` for `minutes` (`trainer.max_time`) into `run_dir`, unless a finished run is there;
    its metrics.json. Comparisons at an equal training time share this."""
    if not (run_dir / "metrics.json").is_file():
        run_python(
            [
                "train.py",
                *overrides,
                f"trainer.max_time=00:00:{minutes:02d}:00",
                f"threads={threads}",
                "logger=csv",
                "trainer.enable_progress_bar=false",
                f"hydra.run.dir={run_dir}",
            ]
        )
    return json.loads((run_dir / "metrics.json").read_text())


def one_epoch_trainer(**kwargs):
    """A pl.Trainer for timing training alone: one CPU epoch, no validation, logging, checkpoints or bars."""
    import pytorch_lightning as pl  # not every script here needs Lightning

    settings = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
    }
    return pl.Trainer(**{**settings, **kwargs})
