"""SLURM on the test cluster (tests/slurm_cluster.py; root and Debian's slurm packages): how long the cluster
takes to start, a job from `sbatch` to RUNNING, and a running job from `scontrol requeue` to RUNNING again,
the median of `--jobs` jobs. Prints one JSON line.

    python bench/slurm.py --jobs 5
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import hardware  # noqa: E402

from tests.slurm_cluster import cluster  # noqa: E402


def running(c, job: str, restarted: bool = False) -> None:
    """Until `job` is RUNNING (after a requeue: its second start, seen in the restart count)."""
    while True:
        fields = c.run("squeue", "-h", "-j", job, "-o", "%T %r", check=False).stdout.split()
        if fields and fields[0] == "RUNNING":
            shown = c.run("scontrol", "show", "job", job, check=False).stdout
            if not restarted or "Restarts=1" in shown:
                return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
    begin = time.perf_counter()
    with cluster() as c:
        started = time.perf_counter() - begin
        submit, requeue = [], []
        for _ in range(args.jobs):
            sent = time.perf_counter()
            job = c.run(
                "sbatch", "--parsable", "--requeue", "-o", "/dev/null", "--wrap", "sleep 300"
            ).stdout.strip()
            running(c, job)
            submit.append(time.perf_counter() - sent)
            sent = time.perf_counter()
            c.run("scontrol", "requeue", job)
            running(c, job, restarted=True)
            requeue.append(time.perf_counter() - sent)
            c.run("scancel", job)
    print(
        json.dumps(
            {
                "cluster_start_s": round(started, 1),
                "submit_to_running_s": round(statistics.median(submit), 2),
                "requeue_to_running_s": round(statistics.median(requeue), 2),
                "jobs": args.jobs,
                "slurm": "22.05.8 (Debian 12)",
                **hardware(),
            }
        )
    )


if __name__ == "__main__":
    main()
