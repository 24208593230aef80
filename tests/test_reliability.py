import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lm_music.checkpoints import load_checkpoint
from tests.conftest import ROOT, TINY_MUSIC, data_path, train_run
from tests.faults import last_logged_step

JSB = [
    "experiment=jsb_chorales",
    f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
    *TINY_MUSIC,
    "callbacks.sample_logger.every_n_epochs=100",
    "test=false",
    "seed=3",
]


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_to_the_same_weights(tmp_path):
    """A real training process is killed with SIGTERM (as SLURM pre-emption does) in its second epoch,
    resumed with ckpt_path=last, and ends with the weights of a run that was never interrupted."""
    common = [*JSB, "data.batch_size=2", "trainer.max_epochs=2"]  # 115 steps an epoch
    uninterrupted = train_run(tmp_path / "whole", common)

    run_dir = tmp_path / "killed"
    # Each step's loss goes to metrics.csv as it is taken, so the signal is sent once step 125 is logged,
    # whatever the load on the machine (a fixed sleep once sometimes landed it between the epochs).
    stepwise_log = ["logger=csv", "trainer.log_every_n_steps=1", "+logger.csv.flush_logs_every_n_steps=1"]
    process = subprocess.Popen(
        [sys.executable, "train.py", *common, *stepwise_log, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while last_logged_step(run_dir / "csv" / "metrics.csv") < 125 and time.time() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    last = run_dir / "checkpoints" / "last.ckpt"
    interrupted_at = load_checkpoint(last)["global_step"]
    assert 125 <= interrupted_at < 230, stderr[-2000:]  # inside the second epoch
    assert not (run_dir / "metrics.json").exists()

    resumed = train_run(run_dir, [*common, "ckpt_path=last"])
    assert resumed["global_step"] == uninterrupted["global_step"] == 230
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")["state_dict"]
    parts = load_checkpoint(last)["state_dict"]
    for name, tensor in whole.items():
        assert torch.equal(tensor, parts[name]), name


def test_a_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            *JSB,
            "model.optimizer.lr=inf",
            "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the training loss became nan at step" in result.stderr
    for checkpoint in (tmp_path / "checkpoints").glob("*.ckpt"):
        weights = load_checkpoint(checkpoint)["state_dict"].values()
        assert all(torch.isfinite(w).all() for w in weights)


def test_same_seed_same_config_gives_identical_metrics(tmp_path):
    runs = [train_run(tmp_path / str(i), [*JSB, "trainer.max_epochs=2", "test=true"]) for i in range(2)]
    for run in runs:
        run.pop("best_checkpoint"), run.pop("tested_checkpoint")
    assert runs[0] == runs[1]
    assert json.dumps(runs[0], sort_keys=True) == json.dumps(runs[1], sort_keys=True)
