"""The thread policy: what the user fixes wins, the jobs of a sweep split the cores, auto follows the free
cores; and a real training run beside busy processes that the test starts and stops."""

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lm_music.errors import UserError
from lm_music.threads import RECHECK_SECONDS, USER_OMP_NUM_THREADS, CpuMeter, ThreadPolicy, usable_cores
from tests.conftest import ROOT, TINY_MUSIC, data_path


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


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all its threads) that process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields 3... of proc(5)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_busy_seconds(meter: CpuMeter) -> float:
    """Busy seconds of the meter's cores, `nice` time included (the meter leaves it out)."""
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name in meter.cpus:
            values = [int(v) for v in fields[:8]]
            busy += sum(values) - values[3] - values[4]  # all but idle and iowait
    return busy * meter.tick


# The meter's readings are checked against what the processes it watches were measured to use over the same
# second, not against a machine assumed idle: they hold whatever else is running.


def test_the_meter_sees_other_processes_and_not_this_one():
    """A busy loop beside this process counts for all the CPU time it got; this process's own spinning, for
    none of it."""
    meter, whole = CpuMeter(), CpuMeter()
    whole.own_counted = False  # every process's time on these cores, this one's included
    (loop,) = busy_loops(1)
    try:
        time.sleep(0.2)
        meter.others(), whole.others()
        start, loop_start, own_start = time.monotonic(), cpu_seconds(loop.pid), time.process_time()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # this process busy: not another's load
            pass
        time.sleep(0.5)
        others, busy = meter.others(), whole.others()
        seconds = time.monotonic() - start
        loop_share = (cpu_seconds(loop.pid) - loop_start) / seconds
        own_share = (time.process_time() - own_start) / seconds
    finally:
        stop([loop])
    assert others >= loop_share - 0.1, (others, loop_share)  # the loop's time is counted
    assert others == pytest.approx(busy - own_share, abs=0.05), (others, busy, own_share)  # this one's is not


def test_the_meter_leaves_out_processes_of_lower_priority():
    """A `nice` process yields the core to this one's threads: its CPU time does not count as taking a core."""
    meter = CpuMeter()
    (loop,) = busy_loops(1, nice=19)
    try:
        time.sleep(0.2)
        meter.others()
        start, loop_start, all_start = time.monotonic(), cpu_seconds(loop.pid), all_busy_seconds(meter)
        time.sleep(1.0)
        others = meter.others()
        seconds = time.monotonic() - start
        loop_share = (cpu_seconds(loop.pid) - loop_start) / seconds
        all_share = (all_busy_seconds(meter) - all_start) / seconds
    finally:
        stop([loop])
    # The cores' busy time less the loop's (a whole core when one is idle, a sliver when all are busy).
    assert others <= all_share - loop_share + 0.1, (others, all_share, loop_share)


def _wait_for_line(log, predicate, process, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in log.read_text().splitlines():
            if predicate(line):
                return line
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no such line after {timeout} s:\n{log.read_text()[-3000:]}")


class LoadBesideRun(CpuMeter):
    """Cores used by processes other than the run `pid`, as the run's own meter counts them: the cores' busy
    time less the run's CPU time (this test's process counts as another's, as it does for the run)."""

    def __init__(self, pid: int) -> None:
        self.run_pid = pid
        super().__init__()

    def _read(self):
        now = super()._read()
        if now is None:
            return None
        return now[0], now[1], cpu_seconds(self.run_pid) if self.own_counted else 0.0


CHOICE = re.compile(
    r"threads: (?:(\d+) -> )?(\d+) \((?:auto: )?other processes are using ([\d.]+) of \d+ cores"
)


def assert_fits(policy: ThreadPolicy, line: str) -> tuple[int, int]:
    """The thread count a run logged is the policy's for the load it logged beside it (printed to 0.1 of a
    core); return (from, to)."""
    match = CHOICE.search(line)
    assert match, line
    before, after, others = int(match[1] or 0), int(match[2]), float(match[3])
    assert policy.fit(others + 0.05, before) <= after <= policy.fit(others - 0.05, before), line
    return before, after


def choices(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if CHOICE.search(line)]


@pytest.mark.slow
def test_a_real_run_takes_one_thread_beside_busy_processes_and_more_once_they_stop(tmp_path):
    """Every core is kept busy by other processes when the run starts: it trains on one thread; once they
    stop, it takes back the cores that are free. Whatever else the machine runs: each choice is the policy's
    for the load the run measured, so never more threads than the free cores; and the rise is required once
    this test has itself seen the cores free for longer than the run's recheck needs."""
    cores = usable_cores()
    policy = ThreadPolicy("auto", environ={}, cores=cores)
    meter = CpuMeter()
    time.sleep(1.0)
    at_start = meter.others()  # the load the test starts from, before its own processes
    at_start = None if at_start is None else round(at_start, 2)
    loops = busy_loops(cores)
    log = tmp_path / "stdout.log"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", USER_OMP_NUM_THREADS)}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "train.py",
                "experiment=jsb_chorales",
                f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
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
        assert_fits(policy, first)
        if cores > 1:
            stop(loops)
            # Look at the load beside the run every recheck, until it rises: four free looks in a row (12 s)
            # hold a whole recheck window of the run's, free, so it must have risen by then. A machine busy
            # from the start gets 15 s; one free at the start, 60 s (a neighbour arriving only delays it).
            beside, loads, free_looks = LoadBesideRun(process.pid), [], 0
            free_at_start = at_start is not None and policy.fit(at_start, 1) > 1
            while len(choices(log)) == 1 and len(loads) < (20 if free_at_start else 5):
                time.sleep(RECHECK_SECONDS)
                assert process.poll() is None, log.read_text()[-3000:]
                loads.append(round(beside.others(), 2))
                free_looks = free_looks + 1 if policy.fit(loads[-1] + 0.1, 1) > 1 else 0
                assert free_looks < 4 or len(choices(log)) > 1, (
                    f"the cores were free for 12 s (others using {loads} of {cores}) and the run kept one thread"
                )
            later = choices(log)[1:]
            # 1 -> 2; then down again, if a neighbour came: each move starts from where the last one ended
            moves = [assert_fits(policy, line) for line in later]
            assert [a for a, _ in moves] == [1, *(b for _, b in moves)][: len(moves)], later
            if not later:
                pytest.skip(
                    f"the rise after the busy processes stop was not seen: other processes kept the cores busy "
                    f"(using {at_start} of {cores} at the start, {loads} after the test's stopped)"
                )
    finally:
        stop(loops)
        process.kill()
        process.wait()
