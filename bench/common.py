"""What every benchmark script shares: the machine and the software it prints beside its figures, and how it runs the project's commands."""

import contextlib
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
