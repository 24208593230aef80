"""The thread policy: what the user fixes wins, the jobs of a sweep split the cores, auto follows the free
cores; and a real training run beside busy processes that the test starts and stops."""

import logging
import os
import subprocess
import sys
import time

import pytest
import torch

from lm_music.errors import UserError
from lm_music.threads import USER_OMP_NUM_THREADS, CpuMeter, ThreadPolicy, usable_cores
from tests.conftest import POLYPHONIC, ROOT, TINY_MUSIC


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def busy_loops(n: int, nice: int = 0) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(nice))
        for _ in range(n)
    ]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()


def test_the_config_key_wins_over_the_environment_and_is_logged_once(caplog):
    policy = ThreadPolicy(3, environ={"OMP_NUM_THREADS": "2", USER_OMP_NUM_THREADS: "2"}, cores=8)
    with caplog.at_level(logging.INFO, logger="lm_music.threads"):
        assert policy.start() == 3
        assert policy.start() == 3  # validate and test after fit: no second choice, no second line
    assert torch.get_num_threads() == 3
    assert [r.getMessage() for r in caplog.records] == ["threads: 3 (threads=3)"]
    assert not policy.adaptive


def test_the_users_omp_num_threads_is_kept_but_not_a_launchers():
    user = ThreadPolicy("auto", environ={"OMP_NUM_THREADS": "2", USER_OMP_NUM_THREADS: "2"}, cores=8)
    assert user.fixed == (2, "OMP_NUM_THREADS=2") and not user.adaptive
    # Set by joblib's loky or Lightning's DDP in a process they started: the user had set none.
    launcher = ThreadPolicy("auto", environ={"OMP_NUM_THREADS": "1", USER_OMP_NUM_THREADS: ""}, cores=8)
    assert launcher.adaptive
    # Called without an entry point (train() from Python): the environment is the user's.
    direct = ThreadPolicy("auto", environ={"OMP_NUM_THREADS": "4"}, cores=8)
    assert direct.fixed == (4, "OMP_NUM_THREADS=4")


def test_the_jobs_of_a_sweep_split_the_cores(caplog):
    policy = ThreadPolicy("auto", environ={"OMP_WAIT_POLICY": "PASSIVE"}, cores=8)
    with caplog.at_level(logging.INFO, logger="lm_music.threads"):
        assert policy.start(sharers=2) == 4
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("threads: 4 (auto: 2 processes of this run share 8 cores")
    assert line.endswith("; OMP_WAIT_POLICY=PASSIVE)")  # the user's wait policy is said, and left alone
    assert ThreadPolicy("auto", environ={}, cores=2).start(sharers=3) == 1


@pytest.mark.parametrize(
    ("others", "current", "expected"),
    [
        (0.05, 0, 2),  # alone: every core
        (0.7, 0, 1),  # a neighbour on most of a core
        (0.7, 2, 1),  # ... arriving while two threads run
        (0.45, 2, 2),  # half a core is not a core: no change
        (0.3, 1, 1),  # up again only with most of a core free
        (0.1, 1, 2),
        (1.9, 2, 1),  # never below one
        (None, 2, 2),  # load unknown: keep the count
    ],
)
def test_auto_follows_the_free_cores_without_flapping(others, current, expected):
    assert ThreadPolicy("auto", environ={}, cores=2).fit(others, current) == expected


@pytest.mark.parametrize("setting", [0, -2, "two", 1.5])
def test_a_bad_thread_count_is_one_clear_error(setting):
    with pytest.raises(UserError, match="threads must be auto or a whole number >= 1"):
        ThreadPolicy(setting, environ={})


def test_the_meter_sees_other_processes_and_not_this_one():
    meter = CpuMeter()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # this process busy: not another's load
        pass
    alone = meter.others()
    loop = busy_loops(1)
    try:
        time.sleep(0.2)
        meter.others()
        time.sleep(1.0)
        beside = meter.others()
    finally:
        stop(loop)
    assert beside - alone > 0.6, (alone, beside)


def test_the_meter_leaves_out_processes_of_lower_priority():
    """A `nice` process yields the core to this one's threads: it does not count as taking a core."""
    meter = CpuMeter()
    time.sleep(1.0)
    alone = meter.others()
    loop = busy_loops(1, nice=19)
    try:
        time.sleep(0.2)
        meter.others()
        time.sleep(1.0)
        beside = meter.others()
    finally:
        stop(loop)
    assert beside - alone < 0.3, (alone, beside)


def _wait_for_line(log, predicate, process, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in log.read_text().splitlines():
            if predicate(line):
                return line
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no such line after {timeout} s:\n{log.read_text()[-3000:]}")


def test_a_real_run_takes_one_thread_beside_busy_processes_and_more_once_they_stop(tmp_path):
    """Every core is kept busy by other processes when the run starts: it trains on one thread; once they
    stop, it takes the cores back."""
    cores = usable_cores()
    loops = busy_loops(cores)
    log = tmp_path / "stdout.log"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", USER_OMP_NUM_THREADS)}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "train.py",
                "experiment=jsb_chorales",
                f"data.path={POLYPHONIC / 'JSB_Chorales.mat'}",
                *TINY_MUSIC,
                "threads=auto",
                "trainer.max_epochs=1000",
                "callbacks.sample_logger.every_n_epochs=1000",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        first = _wait_for_line(log, lambda line: "threads: " in line, process, timeout=120)
        assert "threads: 1 (auto: other processes are using" in first, first
        if cores > 1:
            stop(loops)
            up = _wait_for_line(log, lambda line: "threads: 1 -> " in line, process, timeout=60)
            assert "(other processes are using" in up and int(up.split("threads: 1 -> ")[1].split()[0]) > 1, (
                up
            )
    finally:
        stop(loops)
        process.kill()
        process.wait()
