"""Training speed under thread settings, alone and beside a CPU-bound neighbour that this script starts and stops.

    python bench/threads.py [--repeats 3] [--steps 30] [--warmup 3] [--settings ...] [--neighbours ...] \\
        [--out bench/results/threads.jsonl] [-- train.py overrides]

Times training batches of `python train.py OVERRIDES` (the embedded default unless overrides are given)
through `bench/steps.py`'s StepTimer, in frames (or characters) per second, for each thread setting (the
environment train.py starts with) and each neighbour:

  alone      nothing else runs;
  training   a 1-thread training job of the same configuration (`OMP_NUM_THREADS=1 python train.py ...`),
             started before the measured run and training throughout it;
  busy_loop  `python -c "while True: pass"`;
  joins      the training neighbour starts after the measured run's warm-up; batches are timed from
             `--settle` seconds after the neighbour's first training batch (a policy that adapts has had
             time to see it).

Settings, and what they stand for:

  default    no thread variable set: what `python train.py` does (torch's own default of one thread per core
             before lm_music chose threads itself; the `threads=auto` policy after);
  spin2      OMP_NUM_THREADS=2, OMP_WAIT_POLICY unset (torch's default on 2 cores);
  passive2   OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE;
  spin2_gomp10k  OMP_NUM_THREADS=2 GOMP_SPINCOUNT=10000 (a short spin before sleeping);
  one        OMP_NUM_THREADS=1.

Each repeat runs every neighbour once and, beside it, every setting (the order of the settings rotates
between repeats). Prints and appends one JSON line per measurement (with the lines lm_music logged about its
thread choice), then a table of medians over the repeats.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402
from steps import read_times, speed, timed_command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
SETTINGS = {
    "default": {},
    "spin2": {"OMP_NUM_THREADS": "2"},
    "passive2": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "spin2_gomp10k": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "10000"},
    "one": {"OMP_NUM_THREADS": "1"},
}
NEIGHBOURS = ("alone", "training", "busy_loop", "joins")
BIG = 10**9  # max_steps of runs that this script stops itself


def environment(setting: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return {**env, **setting, "PYTHONPATH": str(ROOT)}


class Run:
    """A timed train.py in the background, stopped by `stop()`."""

    def __init__(self, overrides: list[str], setting: dict, tmp: Path, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
        self.times = self.dir / "steps.json"
        command = timed_command(overrides, BIG, self.dir / "run", self.times)
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(setting),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def rows(self) -> list:
        return read_times(self.times)

    def wait_rows(self, n: int, timeout: float = 600) -> list:
        deadline = time.time() + timeout
        while len(rows := self.rows()) < n:
            if self.process.poll() is not None:
                raise RuntimeError(f"train.py exited: {self.process.stderr.read()[-3000:]}")
            if time.time() > deadline:
                raise TimeoutError(f"no {n} training batches after {timeout} s")
            time.sleep(0.05)
        return rows

    def log_lines(self) -> list[str]:
        log = self.dir / "run" / "train.log"
        text = log.read_text() if log.is_file() else ""
        return [line.split(" - ", 1)[-1] for line in text.splitlines() if "[lm_music.threads]" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process.stderr.close()


def start_neighbour(kind: str, overrides: list[str], tmp: Path) -> Run | subprocess.Popen | None:
    if kind == "busy_loop":
        return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    if kind in ("training", "joins"):
        neighbour = Run(overrides, {"OMP_NUM_THREADS": "1"}, tmp, "neighbour")
        neighbour.wait_rows(1)
        return neighbour
    return None


def stop_neighbour(neighbour: Run | subprocess.Popen | None) -> None:
    if isinstance(neighbour, Run):
        neighbour.stop()
    elif neighbour is not None:
        os.killpg(neighbour.pid, signal.SIGKILL)
        neighbour.wait()


def measure(args, setting: str, kind: str, tmp: Path) -> dict:
    run = Run(args.overrides, SETTINGS[setting], tmp, f"run-{setting}")
    neighbour = None
    try:
        if kind == "joins":
            start = len(run.wait_rows(args.warmup))
            neighbour = start_neighbour(kind, args.overrides, tmp)
            time.sleep(args.settle)
            start = len(run.rows())
        else:
            start = args.warmup
        rows = run.wait_rows(start + args.steps)[start : start + args.steps]
    finally:
        run.stop()
        stop_neighbour(neighbour)
    return {**speed(rows), "policy_log": run.log_lines()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed training batches a measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--settle", type=float, default=5.0, help="joins: seconds before timing starts")
    parser.add_argument("--settings", nargs="+", default=["default", "spin2", "passive2", "one"])
    parser.add_argument("--neighbours", nargs="+", default=list(NEIGHBOURS), choices=NEIGHBOURS)
    parser.add_argument("--out", type=Path, help="append the JSON lines to this file too")
    parser.add_argument("overrides", nargs="*", help="train.py overrides")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = (
                args.settings[repeat % len(args.settings) :] + args.settings[: repeat % len(args.settings)]
            )
            for kind in args.neighbours:
                neighbour = None if kind == "joins" else start_neighbour(kind, args.overrides, Path(tmp))
                try:
                    for setting in order:
                        row = {
                            "benchmark": "threads",
                            "setting": setting,
                            "env": SETTINGS[setting],
                            "neighbour": kind,
                            "repeat": repeat,
                            "overrides": args.overrides,
                            **measure(args, setting, kind, Path(tmp)),
                            "date": date.today().isoformat(),
                            **hardware(),
                        }
                        results.append(row)
                        line = json.dumps(row)
                        print(line, flush=True)
                        if args.out:
                            with open(args.out, "a") as f:
                                f.write(line + "\n")
                finally:
                    stop_neighbour(neighbour)
    print(f"\nmedian positions/s over {args.repeats} repeats")
    print("| setting | " + " | ".join(args.neighbours) + " |")
    for setting in args.settings:
        cells = []
        for kind in args.neighbours:
            rates = [
                r["positions_per_s"] for r in results if r["setting"] == setting and r["neighbour"] == kind
            ]
            cells.append(f"{statistics.median(rates):,.0f}" if rates else "")
        print(f"| {setting} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
