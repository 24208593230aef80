"""SLURM facts that name a run's folder, without importing torch or Lightning: `train.py` registers the
`${lm_music.run_name:...}` resolver of conf/hydra/default.yaml before Hydra composes, so a config mistake is
reported in a fraction of a second instead of after Lightning's import."""

import os

from omegaconf import OmegaConf


def slurm_job() -> str | None:
    """This SLURM job's id (`ARRAYJOB_TASK` for an array task), or None outside a SLURM batch job."""
    environ = os.environ
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID") or None


def run_name(timestamp: str) -> str:
    """A run (or sweep) folder's name: `slurm-JOBID` inside a SLURM job, which a requeued job finds again,
    else the timestamp (`DATE_TIME`). The Hydra resolver `${lm_music.run_name:${now:...}}`."""
    job = slurm_job()
    return f"slurm-{job}" if job else timestamp


def requeued() -> bool:
    """SLURM started this job again (a requeue after pre-emption, a time limit or `scontrol requeue`)."""
    try:
        return slurm_job() is not None and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    except ValueError:
        return False


OmegaConf.register_new_resolver("lm_music.run_name", run_name, replace=True)
