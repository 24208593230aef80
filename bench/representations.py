"""Piano rolls against event tokens on the same piano MIDI: whose samples are closer to the performances?

    python bench/representations.py --data ../shared/data/midi/piano_midi_de [--minutes 50] [--threads 1] \
        [--only roll_nade remi_transformer remi_lstm] [--out bench/runs/representations]

Three models train on the same files and splits (the folder's train/ valid/ test/) for the same time
(`trainer.max_time`), each with its experiment's settings: the roll LSTM-NADE (`experiment=piano_midi` on the
folder: an eighth-note grid, one velocity), the REMI Transformer (`experiment=piano_events`) and the REMI LSTM
(`model=event_rnn`). Run them side by side (`--only`, one process each) so that they share the cores alike.
The Transformer's `max_epochs` is what fits the budget, so that its cosine schedule reaches its end.

Each model is judged twice by `python -m lm_music.evaluate` (16 samples, seed 0, of about the same length in
beats: 1,024 REMI tokens are about 48 beats on this folder, 96 eighth-note frames):
- by its own task's features against its own test split, with its own ceiling and floor (`own`);
- on one yardstick: the samples written by sample.py as MIDI and read back by the REMI evaluator (the same
  tokenizer, features, test pieces, ceiling and floor for all three), which is where velocity spread and
  off-grid onsets compare a roll with a performance (`common`).
Bits per note: the event models' test total NLL over the test notes; for the roll model the same, with its
test `nll_all` times the test frames, over the same notes. It is printed, but it is the likelihood of less
information (no velocities, onsets on the grid), so it does not rank a roll against tokens.
"""

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, run_python, train_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKENS, FRAMES = 1024, 96  # sample lengths: the same number of beats (21.4 REMI tokens a beat here)
MODELS = {
    # the roll and the LSTM have no schedule: the budget stops them. The Transformer's cosine schedule ends at
    # max_epochs: the epochs that fit the budget with three runs on 2 cores (20-30 min an epoch of 2.18 M
    # tokens with its two validations)
    "roll_nade": {"run": ["experiment=piano_midi"], "length": FRAMES},
    "remi_transformer": {
        "run": ["experiment=piano_events", "trainer.max_epochs=2", "trainer.val_check_interval=0.5"],
        "length": TOKENS,
    },
    "remi_lstm": {
        "run": ["experiment=piano_events", "model=event_rnn", "trainer.val_check_interval=0.5"],
        "length": TOKENS,
    },
}
JUDGE = "remi_transformer"  # whose tokenizer and test pieces the common yardstick uses


def train(name: str, data: Path, run_dir: Path, minutes: int, threads: int) -> dict:
    return train_for(minutes, threads, run_dir, [*MODELS[name]["run"], f"data.path={data}"])


def judge(ckpt: str, out: Path, threads: int, length: int, samples_dir: Path | None = None) -> dict:
    source = [f"samples_dir={samples_dir}"] if samples_dir else [f"length={length}"]
    if not (out / "evaluation.json").is_file():
        run_python(
            [
                "-m",
                "lm_music.evaluate",
                f"ckpt_path={ckpt}",
                *source,
                "num_samples=16",
                "seed=0",
                f"threads={threads}",
                f"out_dir={out}",
            ]
        )
    judged = json.loads((out / "evaluation.json").read_text())
    summary, model = judged["summary"], judged["comparisons"]["model"]
    row = {**summary["mean_oa"], "position": summary["position"]}  # model, ceiling, floor
    for feature in ("velocity_spread", "off_grid_onsets"):
        if feature in model:
            row[feature] = round(model[feature]["mean_samples"], 3)
            row[f"reference_{feature}"] = round(model[feature]["mean_reference"], 3)
    return row


def test_notes_and_frames(data: Path, roll_run: Path) -> tuple[float, float]:
    """The test split's MIDI notes (as bits per note counts them) and its frames on the roll model's grid."""
    from omegaconf import OmegaConf

    from lm_music.tasks.events.datamodule import EventDataModule
    from lm_music.tasks.pianoroll.datamodule import PianoRollDataModule

    events = EventDataModule(str(data), cache_dir=str(ROOT / "data" / "cache"))
    events.setup()
    grid = OmegaConf.load(roll_run / ".hydra" / "config.yaml").data.frames_per_beat
    rolls = PianoRollDataModule(
        source="benchmark", path=str(data), frames_per_beat=grid, cache_dir=str(ROOT / "data" / "cache")
    )
    rolls.setup()
    return events.counts["test"]["notes"], float(sum(len(s) for s in rolls.datasets["test"].sequences))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--minutes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "runs" / "representations")
    args = parser.parse_args()
    data, out = args.data.resolve(), args.out.resolve() / args.data.name
    for name in args.only:
        train(name, data, out / name, args.minutes, args.threads)
    judge_run = out / JUDGE / "metrics.json"
    if not judge_run.is_file():
        sys.exit(
            f"trained; the common yardstick needs the {JUDGE} run: train it (--only {JUDGE}), then rerun"
        )
    judge_ckpt = json.loads(judge_run.read_text())["tested_checkpoint"]
    for name in args.only:
        metrics = train(name, data, out / name, args.minutes, args.threads)  # read back: trained above
        ckpt, length = metrics["tested_checkpoint"], MODELS[name]["length"]
        own = judge(ckpt, out / name / "own", args.threads, length)
        samples = out / name / "samples"
        if not samples.is_dir():
            run_python(
                [
                    "sample.py",
                    f"ckpt_path={ckpt}",
                    "num_samples=16",
                    f"length={length}",
                    "seed=0",
                    "audio=false",
                    f"threads={args.threads}",
                    f"out_dir={samples}",
                ]
            )
        common = judge(judge_ckpt, out / name / "common", args.threads, length, samples_dir=samples)
        if "test/bits_per_note" in metrics:
            bits = metrics["test/bits_per_note"]
        else:
            notes, frames = test_notes_and_frames(data, out / name)
            bits = metrics["test/nll_all"] * frames / notes / math.log(2)
        print(
            json.dumps(
                {
                    "benchmark": "representations",
                    "data": data.name,
                    "model": name,
                    "minutes": args.minutes,
                    "epochs": metrics.get("epoch"),
                    "steps": metrics.get("global_step"),
                    "test_nll": metrics.get("test/nll_token", metrics.get("test/nll_all")),
                    "bits_per_note": round(bits, 3),
                    "own": own,
                    "common": common,
                    "date": str(date.today()),
                    **hardware(),
                    "threads": args.threads,  # the runs' threads, not this process's
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
