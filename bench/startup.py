"""Start-up cost of the two entry points: wall time of a one-step training run and of a one-frame sample.

    python bench/startup.py [--repeats 3] [--threads 2]

train: `python train.py experiment=jsb_chorales data.path=.../JSB_Chorales.mat trainer.max_steps=1 test=false`
(in a temporary run folder). Besides the command's total wall time, a callback added from the command line
(`+callbacks.first_batch`, the class below) notes when the first training batch starts, so the time from
process start to the first step is reported too. sample: `python sample.py ckpt_path=TINY num_samples=1
length=1`, TINY a tiny checkpoint trained first. Medians over the repeats; then one run of each under
`python -X importtime`, whose five slowest top-level packages (cumulative) are reported.
"""

import os

# On a shared machine, OpenMP threads that spin at barriers make timings swing 10x: the commands measured
# here (children) wait passively; see bench/throughput.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JSB = ROOT.parent / "shared" / "data" / "polyphonic" / "JSB_Chorales.mat"


class FirstBatch(pl.Callback):
    """Writes the wall-clock time (time.time()) at which the first training batch starts to `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not Path(self.path).exists():
            Path(self.path).write_text(repr(time.time()))


def timed(command: list[str], importtime: bool = False) -> tuple[float, float, str]:
    """(process start time, wall seconds, stderr) of a command run from the repository root."""
    python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
    began, start = time.time(), time.perf_counter()
    out = subprocess.run(python + command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{out.stderr[-3000:]}")
    return began, seconds, out.stderr


def slowest_imports(stderr: str, n: int = 5) -> dict:
    """From `-X importtime`: the total, the n slowest packages imported by name (cumulative ms, nested: a
    package's figure includes what it imports first), and the n packages whose own modules take longest
    (self ms summed over each package's modules: exclusive, these add up to the total)."""
    rows = re.findall(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$", stderr, re.M)
    total = sum(int(cumulative) for _, cumulative, indent, _ in rows if len(indent) == 1)
    cumulative = {name: int(c) for _, c, _, name in rows if "." not in name}
    own: dict[str, int] = {}
    for self_us, _, _, name in rows:
        own[name.split(".")[0]] = own.get(name.split(".")[0], 0) + int(self_us)

    def top(times: dict) -> dict:
        return {k: round(v / 1000) for k, v in sorted(times.items(), key=lambda item: -item[1])[:n]}

    return {
        "import_total_ms": round(total / 1000),
        "slowest_imports_cumulative_ms": top(cumulative),
        "slowest_packages_self_ms": top(own),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the commands")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = [
            f"data.path={JSB}",
            "trainer.max_steps=1",
            "test=false",
            "trainer.enable_progress_bar=false",
        ]
        tiny = ["model.hidden_size=16", "model.embedding_dim=16", "model.nade_hidden=8"]
        timed(["train.py", "experiment=jsb_chorales", *common, *tiny, f"hydra.run.dir={tmp / 'tiny'}"])
        ckpt = tmp / "tiny" / "checkpoints" / "last.ckpt"

        def train_command(i: int) -> list[str]:
            marker = tmp / f"first_batch_{i}.txt"
            callback = [
                "+callbacks.first_batch._target_=bench.startup.FirstBatch",
                f"+callbacks.first_batch.path={marker}",
            ]
            return [
                "train.py",
                "experiment=jsb_chorales",
                *common,
                f"hydra.run.dir={tmp / f'run{i}'}",
                *callback,
            ]

        entries = {
            "train": (
                train_command,
                "train.py experiment=jsb_chorales data.path=JSB trainer.max_steps=1 test=false",
            ),
            "sample": (
                lambda i: [
                    "sample.py",
                    f"ckpt_path={ckpt}",
                    "num_samples=1",
                    "length=1",
                    f"out_dir={tmp / 's'}",
                ],
                "sample.py ckpt_path=TINY.ckpt num_samples=1 length=1",
            ),
        }
        for name, (command, shown) in entries.items():
            walls, firsts = [], []
            for i in range(args.repeats):
                began, seconds, _ = timed(command(i))
                walls.append(seconds)
                marker = tmp / f"first_batch_{i}.txt"
                if name == "train":
                    firsts.append(float(marker.read_text()) - began)
            _, _, stderr = timed(command(args.repeats), importtime=True)
            row = {
                "benchmark": "startup",
                "entry_point": name,
                "command": f"python {shown}",
                "wall_seconds": round(statistics.median(walls), 2),
                "wall_seconds_all": [round(w, 2) for w in walls],
                "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            }
            if firsts:
                row["first_batch_seconds"] = round(statistics.median(firsts), 2)
            row |= slowest_imports(stderr)
            row |= {"repeats": args.repeats, "date": date.today().isoformat(), **hardware()}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
