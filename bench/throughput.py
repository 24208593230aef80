"""Training throughput of the original model size (2 x 512 LSTM, embedding 512), fp32 and bf16.

    python bench/throughput.py [--quick] [--task lyrics music events] [--precision 32-true bf16-mixed]
                               [--steps 3] [--music-steps 10] [--warmup 1] [--max-len 1000] [--threads 2]
                               [--arch rnn|transformer]

For each task and precision, on the same batches of the project's data module, interleaved step by step
(so that all three see the same background load on a shared machine):
  lightning  the project's LightningModule in a pl.Trainer (a callback times steps and the data wait);
  plain      a plain step on a second loader's copy of the batch: `loss_terms`, Adam, clip 1.0
             (torch.autocast for bf16), run from the callback after each Lightning step, timed apart;
  kernel     nn.LSTM + Linear + loss, forward + backward, on a dense random batch of the batch's shape
             (`--arch rnn` only; the Transformer's FLOP/s against a matmul: bench/transformer.py).
`--arch transformer` times the Transformer of conf/model/{char,pianoroll,event}_transformer.yaml's sizes instead.
`events`: REMI tokens of POP909 in windows of `--max-len` tokens, batches of 8, as `experiment=pop909_events`,
with conf/model/event_{rnn,transformer}.yaml's sizes (no kernel row: its LSTM is not the 512-input one here).
Throughput counts real (unpadded) predicted positions: characters (lyrics), frames (music) or tokens; the kernel
counts every position of its dense batch. Figures are medians over the timed steps, ratios are medians of
per-batch ratios (the same batch in both paths). Model FLOPs per position = 6 x W, W = the weights of the
LSTM's and the output layer's matrices (2 FLOPs per weight forward, x3 for forward + backward; the
embedding/input projection, the gates' elementwise work and the optimiser are left out).
"""

import os

# On a shared machine, OpenMP threads that spin at barriers make 2-thread timings swing 10x: wait passively.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, one_epoch_trainer  # noqa: E402

from lm_music.tasks.events.datamodule import EventDataModule  # noqa: E402
from lm_music.tasks.events.lit_module import EventLitModule  # noqa: E402
from lm_music.tasks.lyrics.datamodule import LyricsDataModule  # noqa: E402
from lm_music.tasks.lyrics.lit_module import LyricsLitModule  # noqa: E402
from lm_music.tasks.pianoroll.datamodule import PianoRollDataModule  # noqa: E402
from lm_music.tasks.pianoroll.lit_module import PianoRollLitModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


class Interleaved(pl.Callback):
    """Times Lightning's steps and, after each, a plain step on the same batch and a kernel step on a dense
    batch of its shape, so that the three paths see the same background load."""

    def __init__(self, dm, plain: pl.LightningModule, outputs: int, bf16: bool, kernel: bool = True) -> None:
        self.dm, self.plain, self.outputs, self.bf16, self.kernel = dm, plain, outputs, bf16, kernel
        self.optimizer = plain.configure_optimizers()
        self.lstm, self.head = nn.LSTM(512, 512, 2, batch_first=True), nn.Linear(512, outputs)
        self.starts, self.ends, self.afters, self.shapes, self.plain_s, self.kernel_s = ([] for _ in range(6))

    def on_train_start(self, trainer, pl_module) -> None:
        self.batches = iter(self.dm.train_dataloader())  # a second loader: the same batches, for `plain`

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())
        self.shapes.append((tuple(batch["sequences"].shape[:2]), int((batch["lengths"] - 1).sum())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())
        self.plain_s.append(self.plain_step())
        self.kernel_s.append(self.kernel_step(*self.shapes[-1][0]) if self.kernel else float("nan"))
        self.afters.append(time.perf_counter())

    def plain_step(self) -> float:
        start = time.perf_counter()
        batch = next(self.batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            nll_sum, count, _ = self.plain.loss_terms(batch)
            loss = nll_sum / count.clamp(min=1)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.plain.parameters(), 1.0)
        self.optimizer.step()
        seconds = time.perf_counter() - start
        assert tuple(batch["sequences"].shape[:2]) == self.shapes[-1][0], "plain must see Lightning's batch"
        return seconds

    def kernel_step(self, batch: int, length: int) -> float:
        """nn.LSTM + Linear + loss, forward + backward, dense: the model reads and predicts T - 1 positions."""
        x = torch.randn(batch, length - 1, 512)
        if self.outputs == 88:
            target = torch.randint(0, 2, (batch, length - 1, 88)).float()
        else:
            target = torch.randint(0, self.outputs, (batch * (length - 1),))
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.head(self.lstm(x)[0]).float()
        if self.outputs == 88:
            loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), target)
        loss.backward()
        self.lstm.zero_grad(set_to_none=True)
        self.head.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def make(task: str, args) -> tuple[pl.LightningDataModule, Callable]:
    if task == "lyrics":
        dm = LyricsDataModule(str(DATA / "lyrics" / "songdata_head.csv"), max_len=args.max_len, batch_size=50)
        dm.setup("fit")
        return dm, lambda: LyricsLitModule(**dm.model_kwargs(), **sizes("char", args.arch))
    if task == "events":
        dm = EventDataModule(
            str(DATA / "midi" / "pop909"),
            max_len=args.max_len,
            batch_size=8,
            cache_dir=str(ROOT / "data" / "cache"),
        )
        dm.setup("fit")
        return dm, lambda: EventLitModule(**dm.model_kwargs(), **sizes("event", args.arch))
    dm = PianoRollDataModule(path=str(DATA / "polyphonic" / "Nottingham.mat"), batch_size=args.music_batch)
    dm.setup("fit")
    return dm, lambda: PianoRollLitModule(**dm.model_kwargs(), **sizes("pianoroll", args.arch))


def sizes(model: str, arch: str) -> dict:
    """The network's settings of conf/model/{model}_transformer.yaml (event models: event_rnn.yaml too); the
    other RNNs' are the classes' defaults."""
    if arch == "rnn" and model != "event":
        return {}
    cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{model}_{arch}.yaml")
    keys = ("arch", "d_model", "n_layer", "n_head", "context", "dropout", "hidden_size", "embedding_dim")
    return {k: v for k, v in cfg.items() if k in keys + (("num_layers",) if arch == "rnn" else ())}


def measure(task: str, precision: str, dm, new_module, args) -> dict:
    timed = args.music_steps if task == "music" else args.steps
    torch.manual_seed(0)
    module, plain = new_module(), new_module()
    plain.load_state_dict(module.state_dict())
    outputs = len(dm.vocab) if task == "lyrics" else len(dm.codec) if task == "events" else 88
    kernel = args.arch == "rnn" and task != "events"
    bench = Interleaved(dm, plain, outputs, precision == "bf16-mixed", kernel=kernel)
    trainer = one_epoch_trainer(
        devices=1,
        precision=precision,
        limit_train_batches=args.warmup + timed,
        gradient_clip_val=1.0,
        callbacks=[bench],
    )
    trainer.fit(module, datamodule=dm)

    steps = range(args.warmup, args.warmup + timed)
    b = bench
    cycle = {i: b.ends[i] - b.afters[i - 1] for i in steps}  # fetching batch i + its step, in Lightning
    wait = {i: b.starts[i] - b.afters[i - 1] for i in steps}
    real = {i: b.shapes[i][1] for i in steps}
    dense = {i: b.shapes[i][0][0] * (b.shapes[i][0][1] - 1) for i in steps}
    weights = sum(p.numel() for name, p in b.lstm.named_parameters() if "weight" in name)
    flops = 6 * (weights + b.head.weight.numel())
    med = statistics.median
    lightning = med(real[i] / cycle[i] for i in steps)
    kernel = med(dense[i] / b.kernel_s[i] for i in steps)
    return {
        "benchmark": "throughput",
        "task": task,
        "arch": args.arch,
        "unit": {"lyrics": "characters/s", "events": "tokens/s"}.get(task, "frames/s"),
        "precision": precision,
        "batch_size": dm.batch_size,
        "max_len": args.max_len if task != "music" else None,
        "timed_steps": timed,
        "mean_batch_shape": [round(statistics.mean(b.shapes[i][0][k] for i in steps), 1) for k in (0, 1)],
        "padding_share": round(1 - sum(real.values()) / sum(dense.values()), 4),
        "lightning_per_s": round(lightning),
        "plain_per_s": round(med(real[i] / b.plain_s[i] for i in steps)),
        "kernel_per_s": round(kernel) if b.kernel else None,
        "lightning_vs_plain": round(med(b.plain_s[i] / cycle[i] for i in steps), 3),
        "lightning_vs_kernel": round(med(real[i] / cycle[i] * b.kernel_s[i] / dense[i] for i in steps), 3)
        if b.kernel
        else None,
        "plain_vs_kernel": round(med(real[i] / b.plain_s[i] * b.kernel_s[i] / dense[i] for i in steps), 3)
        if b.kernel
        else None,
        "data_wait_share": round(sum(wait.values()) / sum(cycle.values()), 4),
        "flops_per_position": flops if b.kernel else None,
        "model_gflop_per_s": round(flops * lightning / 1e9, 1) if b.kernel else None,
        "kernel_gflop_per_s": round(flops * kernel / 1e9, 1) if b.kernel else None,
        "step_seconds_lightning": round(med(cycle.values()), 3),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "date": date.today().isoformat(),
        **hardware(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--task", nargs="+", default=["lyrics", "music"], choices=["lyrics", "music", "events"]
    )
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--steps", type=int, default=3, help="timed lyrics and events steps per path")
    parser.add_argument("--music-steps", type=int, default=10, help="timed music steps per path")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1)")
    parser.add_argument("--max-len", type=int, default=1000, help="lyrics and events windows (data.max_len)")
    parser.add_argument("--music-batch", type=int, default=32, help="Nottingham batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arch", default="rnn", choices=["rnn", "transformer"])
    parser.add_argument("--quick", action="store_true", help="lyrics windows of 250 characters")
    args = parser.parse_args()
    if args.quick:
        args.max_len = 250
    args.warmup = max(args.warmup, 1)
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    for task in args.task:
        dm, new_module = make(task, args)
        for precision in args.precision:
            print(json.dumps(measure(task, precision, dm, new_module, args)), flush=True)


if __name__ == "__main__":
    main()
