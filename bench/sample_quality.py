"""Does a better likelihood give samples more like the data? Test NLL beside the sample judgement.

    python bench/sample_quality.py --data ../shared/data/polyphonic/JSB_Chorales.mat --experiment jsb_chorales \
        --epochs 30 [--max-time 00:00:26:00] [--pretrained jsb_chorales] [--threads 1] [--out bench/runs/sample_quality]

Trains, with the experiment's settings and `--epochs` epochs, the LSTM with independent keys
(`model.head=bernoulli`), the LSTM-NADE (the experiment's own model) and the Transformer-NADE
(`model=pianoroll_transformer`); with `--pretrained`, the shipped model of that data too (its full training).
Each is then judged by `python -m lm_music.evaluate` (64 samples x 256 frames, seed 0, against the test split,
with the ceiling and the floor). One JSON line per model: test NLL, mean OA, where it lies between the floor
and the ceiling, and the features' means.
"""

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, run_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "LSTM, independent keys": ["model.head=bernoulli"],
    "LSTM-NADE": [],
    "Transformer-NADE": ["model=pianoroll_transformer"],
}


def judge(model: str, data: Path, out: Path) -> dict:
    run_python(
        [
            "-m",
            "lm_music.evaluate",
            model,
            f"data.path={data}",
            "num_samples=64",
            "length=256",
            "seed=0",
            "threads=1",
            f"out_dir={out}",
        ]
    )
    result = json.loads((out / "evaluation.json").read_text())
    return {
        "mean_oa": result["summary"]["mean_oa"],
        "position": result["summary"]["position"],
        "means": {k: round(c["mean_samples"], 4) for k, c in result["comparisons"]["model"].items()},
        "reference_means": {
            k: round(c["mean_reference"], 4) for k, c in result["comparisons"]["model"].items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-time", help="also stop each training after this long (DD:HH:MM:SS)")
    parser.add_argument("--pretrained")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "runs" / "sample_quality")
    args = parser.parse_args()
    data = args.data.resolve()
    rows = []
    for name, overrides in MODELS.items():
        run_dir = args.out / args.experiment / name.split(",")[0].replace(" ", "_").lower()
        if not (run_dir / "metrics.json").is_file():
            run_python(
                [
                    "train.py",
                    f"experiment={args.experiment}",
                    f"data.path={data}",
                    *overrides,
                    f"trainer.max_epochs={args.epochs}",
                    *([f"trainer.max_time={args.max_time}"] if args.max_time else []),
                    f"threads={args.threads}",
                    "logger=csv",
                    "trainer.enable_progress_bar=false",
                    f"hydra.run.dir={run_dir}",
                ]
            )
        metrics = json.loads((run_dir / "metrics.json").read_text())
        judged = judge(f"ckpt_path={metrics['tested_checkpoint']}", data, run_dir / "evaluation")
        epochs = metrics.get("epoch", args.epochs)  # fewer than --epochs where --max-time stopped it
        rows.append({"model": name, "epochs": epochs, "test_nll": metrics["test/nll"], **judged})
    if args.pretrained:
        card = json.loads((ROOT / "lm_music" / "pretrained" / args.pretrained / "config.json").read_text())
        judged = judge(f"pretrained={args.pretrained}", data, args.out / args.experiment / "shipped")
        name = f"LSTM-NADE, shipped ({args.pretrained})"
        rows.append({"model": name, "epochs": "full", "test_nll": card["metrics"]["test/nll"], **judged})
    for row in rows:
        print(
            json.dumps(
                {
                    "benchmark": "sample_quality",
                    "data": data.name,
                    **row,
                    "date": str(date.today()),
                    **hardware(),
                }
            )
        )


if __name__ == "__main__":
    main()
