"""The README's SLURM section against a live single-node cluster (tests/slurm_cluster.py): a submitit sweep,
a failing job, DDP ranks as SLURM tasks, `scontrol requeue` of a running training, and a time limit with
Lightning's requeue under plain `sbatch`. Marked `slurm` (`pytest -m slurm -n 0`, as .ci/run does); skipped,
with the reason, where the Debian packages or root are missing."""

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lm_music.checkpoints import load_checkpoint
from tests import slurm_cluster
from tests.conftest import ROOT, TINY_MUSIC, data_path
from tests.faults import assert_same_weights

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(bool(slurm_cluster.missing()), reason=slurm_cluster.missing() or ""),
]

JSB = [
    "experiment=jsb_chorales",
    f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
    *TINY_MUSIC,
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.sample_logger.every_n_epochs=100",
]
SUBMITIT = [
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
]


@pytest.fixture(scope="session")
def slurm():
    with slurm_cluster.cluster() as cluster:
        yield cluster


def train(cluster, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python train.py OVERRIDES` with the cluster's SLURM_CONF, as a user on a login node runs it."""
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "train.py", *overrides]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def sbatch(cluster, script: str, folder: Path, *options: str) -> str:
    """Submit a batch script (run from the repository, the job's output in `folder/slurm-JOBID.out`)."""
    path = folder / "job.sh"
    path.write_text("#!/bin/bash\n" + script)
    out = folder / "slurm-%j.out"
    done = cluster.run(
        "sbatch",
        "--parsable",
        f"--chdir={ROOT}",
        f"--output={out}",
        "--open-mode=append",
        *options,
        str(path),
    )
    return done.stdout.strip().split(";")[0]


def summary(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_submitit_sweep_runs_each_point_as_a_slurm_job(slurm, tmp_path):
    done = train(
        slurm, "-m", *SUBMITIT, *JSB, "trainer.max_steps=2", "seed=1,2", f"hydra.sweep.dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.name for p in tmp_path.iterdir() if (p / "metrics.json").is_file())
    assert jobs == ["0", "1"]
    rows = summary(tmp_path)
    assert [r["job"] for r in rows] == jobs and all(float(r["test/nll"]) > 0 for r in rows)
    # one SLURM array job, a task per sweep point, each COMPLETED by the accounting's word
    tasks = sorted(p.name for p in (tmp_path / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(tasks) == 2
    for task in tasks:  # the accounting hears of a job's end a moment after submitit reads its result
        assert slurm.wait(task, ("COMPLETED", "FAILED", "CANCELLED"), 60) == "COMPLETED"


def test_a_failing_job_ends_the_sweep_with_its_error_line(slurm, tmp_path):
    missing = tmp_path / "no_such_folder"
    started = time.monotonic()
    overrides = ["experiment=pop909_events", f"data.path={missing}", "threads=1", "seed=1"]
    done = train(slurm, "-m", *SUBMITIT, *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode != 0 and time.monotonic() - started < 300  # an error, never a hang
    line = f"error: MIDI folder {missing} does not exist or is not a folder"
    (log,) = (tmp_path / "sweep" / ".submitit").rglob("*_log.err")
    assert line in log.read_text()  # in the job's log
    assert line in done.stderr and "(state: FAILED)" in done.stderr  # and in the sweep's output


# The pre-emption runs: 4 epochs of 8 batches, a checkpoint at every validation (tests/test_preemption.py's)
EPOCH = 8
RUN = [
    *JSB,
    "data.batch_size=2",
    f"trainer.limit_train_batches={EPOCH}",
    "trainer.limit_val_batches=2",
    "trainer.max_epochs=4",
    "test=false",
    "seed=3",
    "logger=csv",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The same training outside SLURM, never stopped."""
    from tests.conftest import train_run

    run_dir = tmp_path_factory.mktemp("whole")
    train_run(run_dir, RUN)
    return run_dir


def command(*overrides: str) -> str:
    return " ".join([sys.executable, "train.py", *overrides]) + "\n"


def wait_for_file(path: Path, cluster, job: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} in {seconds} s (job {job}: {cluster.state(job)})"
        assert cluster.state(job) not in ("FAILED", "COMPLETED", "CANCELLED"), cluster.state(job)
        time.sleep(0.2)


def test_scontrol_requeue_of_a_running_training_resumes_it_in_its_folder(slurm, tmp_path, uninterrupted):
    """`scontrol requeue` (what pre-emption with PreemptMode=REQUEUE does): SIGTERM, `last.ckpt` at the step
    reached, the job back with SLURM_RESTART_COUNT=1 in the same `runs/slurm-JOBID`, resumed from it with no
    `ckpt_path`, ending with the weights of a run never stopped."""
    marker = tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=tests.faults.PauseAt",
        f"+callbacks.pause.step={EPOCH + 3}",
        f"+callbacks.pause.marker={marker}",
    ]
    job = sbatch(slurm, command(*RUN, *pause, f"paths.log_dir={tmp_path}"), tmp_path, "--requeue")
    wait_for_file(marker, slurm, job)
    slurm.run("scontrol", "requeue", job)
    assert slurm.wait(job, ("COMPLETED", "FAILED"), 600) == "COMPLETED"
    run_dir = tmp_path / "jsb_chorales" / "runs" / f"slurm-{job}"
    log = (tmp_path / f"slurm-{job}.out").read_text()
    assert f"interrupted at step {EPOCH + 3}: saved" in log, log[-3000:]
    assert f"SLURM_RESTART_COUNT=1): resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in log
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4 * EPOCH
    assert_same_weights(uninterrupted / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "last.ckpt")


def test_a_time_limit_with_sigusr1_requeues_through_lightning_under_plain_sbatch(
    slurm, tmp_path, uninterrupted
):
    """`#SBATCH --signal=SIGUSR1@90` and `--requeue`, `srun python train.py`: Lightning saves `hpc_ckpt_1.ckpt` in the run folder and
    requeues the job itself before the limit; it comes back to `runs/slurm-JOBID` and completes there with the
    weights of a run never stopped. The run waits at a step for the signal (SLURM checks limits every ~30 s)."""
    marker = tmp_path / "paused"
    pause = [  # waits, up to 170 s, for the SIGTERM that follows Lightning's own `scontrol requeue`
        "+callbacks.pause._target_=tests.faults.PauseAt",
        f"+callbacks.pause.step={EPOCH + 3}",
        f"+callbacks.pause.marker={marker}",
        "+callbacks.pause.timeout=170",
    ]
    # srun: `--signal` without `B:` goes to the job's steps, not to the batch shell
    script = "srun " + command(*RUN, *pause, f"paths.log_dir={tmp_path}")
    job = sbatch(slurm, script, tmp_path, "--requeue", "--time=3", "--signal=SIGUSR1@90")
    assert slurm.wait(job, ("COMPLETED", "FAILED", "TIMEOUT"), 420) == "COMPLETED"
    run_dir = tmp_path / "jsb_chorales" / "runs" / f"slurm-{job}"
    log = (tmp_path / f"slurm-{job}.out").read_text()
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file(), log[-3000:]
    assert "SLURM_RESTART_COUNT=1): resuming from" in log
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4 * EPOCH
    assert_same_weights(uninterrupted / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "last.ckpt")


def test_submitit_requeues_a_job_at_its_time_limit(slurm, tmp_path, uninterrupted):
    """The submitit launcher's time limit: USR2 `signal_delay_s` before it, submitit requeues the job (at most
    `max_num_timeout` times) and exits; the job comes back to its fixed folder and resumes from `last.ckpt`."""
    marker = tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=tests.faults.PauseAt",
        f"+callbacks.pause.step={EPOCH + 3}",
        f"+callbacks.pause.marker={marker}",
        "+callbacks.pause.timeout=170",
    ]
    limits = [
        "hydra.launcher.timeout_min=3",
        "hydra.launcher.signal_delay_s=90",
        "hydra.launcher.max_num_timeout=1",
    ]
    sweep = tmp_path / "sweep"
    done = train(slurm, "-m", *SUBMITIT, *limits, *RUN, *pause, f"hydra.sweep.dir={sweep}", timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "SLURM_RESTART_COUNT=1): resuming from" in log, log[-3000:]
    assert load_checkpoint(sweep / "0" / "checkpoints" / "last.ckpt")["global_step"] == 4 * EPOCH
    assert_same_weights(
        uninterrupted / "checkpoints" / "last.ckpt", sweep / "0" / "checkpoints" / "last.ckpt"
    )


def test_ddp_ranks_as_slurm_tasks_train_as_two_processes_do(slurm, tmp_path):
    """`hydra.launcher.tasks_per_node=2 trainer=ddp trainer.devices=2` on the CPU (gloo): each SLURM task is a
    rank (Lightning reads them from SLURM), rank 0 alone writes, and the run ends where a two-process run
    outside SLURM (`trainer=ddp`: Lightning starts the second rank) with the same seed ends."""
    from tests.conftest import run_script

    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32", "trainer.devices=2"]
    common = [*JSB, *ddp, "data.batch_size=16", "trainer.max_epochs=1", "seed=4"]
    done = run_script("train.py", *common, f"hydra.run.dir={tmp_path / 'outside'}")
    assert done.returncode == 0, done.stderr[-3000:]
    outside = json.loads((tmp_path / "outside" / "metrics.json").read_text())
    sweep = tmp_path / "sweep"
    done = train(
        slurm, "-m", *SUBMITIT, "hydra.launcher.tasks_per_node=2", *common, f"hydra.sweep.dir={sweep}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    inside = json.loads((sweep / "0" / "metrics.json").read_text())
    assert inside["global_step"] == outside["global_step"] == 8  # 15 batches of 16 shared by two ranks
    for metric in ("val/nll", "test/nll"):
        assert inside[metric] == pytest.approx(outside[metric], rel=1e-5), metric
    names = sorted(p.name for p in (sweep / "0" / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "outside" / "checkpoints").iterdir())
    logs = {p.name: p.read_text() for p in (sweep / ".submitit").rglob("*_log.out")}
    assert len(logs) == 2 and all(
        "[rank: 1]" in text for name, text in logs.items() if name.endswith("_1_log.out")
    )
