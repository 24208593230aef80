"""How many threads torch computes with: as many as the cores that other processes leave free, rechecked while
training, unless the user fixed the number (`threads=N` or `OMP_NUM_THREADS`).

Why: OpenMP threads wait for each other at every barrier by spinning. Alone, that makes two threads the
fastest setting on two cores; beside one CPU-bound process, a spinning thread that shares a core with it
waits for a time slice at every barrier, and a step of the default model ran 6-14x slower than on one thread
(BENCHMARKS.md, bench/threads.py). Waiting passively (OMP_WAIT_POLICY=PASSIVE) cures that but costs 2.4x
alone, and a thread count chosen once at start goes wrong when a neighbour starts later. So the count
follows the cores actually free: the CPU time that other processes took on this process's cores over the
last few seconds (per-core counters of /proc/stat, less this process's own CPU time).
"""

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

from lm_music.errors import UserError

log = logging.getLogger(__name__)

RECHECK_SECONDS = 3.0  # how often a training run looks at the other processes again
FIRST_WINDOW_SECONDS = 0.5  # the shortest look before the first choice
# Free cores are counted to the nearest whole core when going down, and with 0.8 of a core to spare when
# going up, so that a neighbour near the threshold does not make the count flap.
DOWN_MARGIN, UP_MARGIN = 0.5, 0.2
USER_OMP_NUM_THREADS = "LM_MUSIC_USER_OMP_NUM_THREADS"


_process_meter = None  # started by start_looking()


def start_looking() -> None:
    """Called first thing by the entry points. Starts watching the other processes, so that the first choice
    looks over the whole start-up (seconds) instead of waiting. And notes the user's own OMP_NUM_THREADS (or
    its absence) for the processes that launchers start: they set it there themselves (joblib's loky to
    cores // n_jobs, Lightning's DDP to cores // ranks), and those values are not the user's choice."""
    global _process_meter
    os.environ.setdefault(USER_OMP_NUM_THREADS, os.environ.get("OMP_NUM_THREADS", ""))
    _process_meter = CpuMeter()


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


class CpuMeter:
    """Cores' worth of CPU time that other processes used on this process's cores between two readings.

    Time at a lower priority (`nice`) is not counted: the scheduler gives such a process a small share
    (1.5 % at nice 19) when this one wants the core, so it does not hold up this one's threads."""

    def __init__(self) -> None:
        try:
            self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        except (AttributeError, OSError):
            self.cpus = {f"cpu{i}" for i in range(os.cpu_count() or 1)}
        self.tick = 1 / os.sysconf("SC_CLK_TCK")
        self.pid = os.getpid()
        self.own_counted = os.getpriority(os.PRIO_PROCESS, 0) <= 0  # else this process's time is nice time
        self.last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(wall time, busy seconds of the cores, this process's CPU seconds), or None without /proc/stat."""
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if name in self.cpus:
                # user nice system idle iowait irq softirq steal ...: all but nice, idle and iowait is busy
                values = [int(v) for v in fields[:8]]
                busy += sum(values) - values[1] - values[3] - values[4]
        return time.monotonic(), busy * self.tick, time.process_time() if self.own_counted else 0.0

    def seconds(self) -> float:
        """Seconds since the last reading."""
        return time.monotonic() - self.last[0] if self.last else 0.0

    def others(self) -> float | None:
        """Cores used by other processes since the last reading (which this one replaces); None if unknown."""
        now = self._read()
        if now is None or self.last is None or now[0] - self.last[0] <= 0:
            self.last = now
            return None
        wall, busy, own = (a - b for a, b in zip(now, self.last))
        self.last = now
        return max(0.0, (busy - own) / wall)


def _explicit(setting, environ: Mapping[str, str]) -> tuple[int, str] | None:
    """A thread count the user fixed: `threads=N`, else their OMP_NUM_THREADS."""
    if setting not in (None, "auto"):
        threads = int(setting) if str(setting).strip().isdigit() else 0
        if threads < 1:
            raise UserError(f"threads must be auto or a whole number >= 1, got {setting!r}")
        return threads, f"threads={threads}"
    value = environ.get(USER_OMP_NUM_THREADS, environ.get("OMP_NUM_THREADS", "")).strip()
    if value.isdigit() and int(value) >= 1:
        return int(value), f"OMP_NUM_THREADS={value}"
    return None


class ThreadPolicy:
    """Chooses torch's thread count at the start of a run and, for `threads=auto`, again every few seconds.

    `setting` is the config's `threads` (auto or a number). A user's OMP_NUM_THREADS counts only as
    `start_looking` recorded it, so that a launcher's value is not taken for the user's.
    """

    def __init__(
        self,
        setting: int | str | None = "auto",
        environ: Mapping[str, str] = os.environ,
        cores: int | None = None,
    ) -> None:
        self.cores = cores or usable_cores()
        self.fixed = _explicit(setting, environ)
        self.wait_policy = environ.get("OMP_WAIT_POLICY")
        started = _process_meter is not None and _process_meter.pid == os.getpid()
        self.meter = _process_meter if started else CpuMeter()
        self.threads = 0

    @property
    def adaptive(self) -> bool:
        return self.fixed is None

    def fit(self, others: float | None, current: int) -> int:
        """The thread count for `others` cores busy elsewhere, moving from `current` (0: none chosen yet)."""
        if others is None:  # no /proc/stat: keep what was chosen
            return current or self.cores
        free = self.cores - others
        down = max(1, min(self.cores, math.floor(free + DOWN_MARGIN)))
        if current == 0 or down < current:
            return down
        up = max(1, min(self.cores, math.floor(free + UP_MARGIN)))
        return up if up > current else current

    def start(self, sharers: int = 1) -> int:
        """Choose and apply the first thread count; log once what was chosen and why.

        `sharers` processes of this run share the machine's cores (the jobs a joblib sweep runs at once, the
        ranks of a data-parallel run): they start together, so each starts on its share of the cores."""
        if self.meter.pid != os.getpid():  # a process started by a launcher (ddp_spawn): look from here
            self.meter, self.threads = CpuMeter(), 0
        if self.threads:  # chosen already in this process (fit, then validate and test)
            return self.threads
        if self.fixed is not None:
            self.threads, why = self.fixed
        else:
            if sharers > 1:
                self.threads = max(1, self.cores // sharers)
                why = f"{sharers} processes of this run share {self.cores} cores"
            else:
                time.sleep(max(0.0, FIRST_WINDOW_SECONDS - self.meter.seconds()))
                others = self.meter.others()
                self.threads = self.fit(others, 0)
                why = self._describe(others)
            why = f"auto: {why}; rechecked every {RECHECK_SECONDS:.0f} s; threads=N fixes it"
        if self.wait_policy:
            why += f"; OMP_WAIT_POLICY={self.wait_policy}"
        _set_threads(self.threads)
        log.info("threads: %d (%s)", self.threads, why)
        return self.threads

    def recheck(self) -> int:
        """For threads=auto, at most every RECHECK_SECONDS: follow the cores that other processes left free."""
        if self.fixed is not None or self.meter.seconds() < RECHECK_SECONDS:
            return self.threads
        others = self.meter.others()
        threads = self.fit(others, self.threads)
        if threads != self.threads:
            log.info("threads: %d -> %d (%s)", self.threads, threads, self._describe(others))
            self.threads = threads
            _set_threads(threads)
        return self.threads

    def _describe(self, others: float | None) -> str:
        if others is None:
            return f"{self.cores} cores, load unknown (no /proc/stat)"
        return f"other processes are using {others:.1f} of {self.cores} cores"


def _set_threads(threads: int) -> None:
    import torch  # not at the top: the entry points import this module before anything heavy

    torch.set_num_threads(threads)
