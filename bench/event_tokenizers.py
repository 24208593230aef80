"""Which tokenizer models the same music best? REMI against TSD, with and without BPE, on the same files.

    python bench/event_tokenizers.py --data ../shared/data/midi/pop909 [--minutes 9] [--threads 1] \
        [--only REMI TSD REMI+BPE TSD+BPE] [--out bench/runs/tokenizers]

Each tokenizer trains the same small event LSTM (`model=event_rnn`, 1 x 256, windows of 512 tokens) on the
same training pieces for the same time (`trainer.max_time`: an equal budget, so a tokenizer whose sequences
are shorter sees more music), then is scored on the whole test pieces by train.py (nll_token, bits per note,
nats per second) and judged by `python -m lm_music.evaluate` (16 samples of 1,024 tokens, seed 0, against
the test split, with the ceiling and the floor). One JSON line per tokenizer. Compare them by bits per note
and nats per second: a token is not the same unit in two tokenizers, so nll_token is not comparable.
"""

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, run_python, train_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKENIZERS = {
    "REMI": ["data.tokenizer=REMI"],
    "TSD": ["data.tokenizer=TSD"],
    "REMI+BPE": ["data.tokenizer=REMI", "data.bpe_vocab_size=1000"],
    "TSD+BPE": ["data.tokenizer=TSD", "data.bpe_vocab_size=1000"],
}
MODEL = ["model=event_rnn", "model.num_layers=1", "model.hidden_size=256", "model.embedding_dim=128"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--minutes", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=list(TOKENIZERS), default=list(TOKENIZERS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "runs" / "tokenizers")
    args = parser.parse_args()
    data = args.data.resolve()
    for name in args.only:
        run_dir = args.out / data.name / name.replace("+", "_").lower()
        metrics = train_for(
            args.minutes,
            args.threads,
            run_dir,
            [
                "experiment=pop909_events",
                f"data.path={data}",
                "data.max_len=512",
                "data.batch_size=16",
                *TOKENIZERS[name],
                *MODEL,
                "trainer.max_epochs=100",
                "trainer.val_check_interval=0.5",
            ],
        )
        out = run_dir / "evaluation"
        run_python(
            [
                "-m",
                "lm_music.evaluate",
                f"ckpt_path={metrics['tested_checkpoint']}",
                "num_samples=16",
                "length=1024",
                "seed=0",
                f"threads={args.threads}",
                f"out_dir={out}",
            ]
        )
        judged = json.loads((out / "evaluation.json").read_text())
        model = judged["comparisons"]["model"]
        print(
            json.dumps(
                {
                    "benchmark": "tokenizers",
                    "data": data.name,
                    "tokenizer": name,
                    "minutes": args.minutes,
                    "epochs": metrics.get("epoch"),
                    "steps": metrics.get("global_step"),
                    **{
                        k: metrics.get(f"test/{k}") for k in ("nll_token", "bits_per_note", "nats_per_second")
                    },
                    "mean_oa": judged["summary"]["mean_oa"],
                    "position": judged["summary"]["position"],
                    "velocity_spread": round(model["velocity_spread"]["mean_samples"], 2),
                    "reference_velocity_spread": round(model["velocity_spread"]["mean_reference"], 2),
                    "off_grid_onsets": round(model["off_grid_onsets"]["mean_samples"], 3),
                    "grammar_errors": round(model["grammar_errors"]["mean_samples"], 4),
                    "date": str(date.today()),
                    **hardware(),
                    "threads": args.threads,  # the runs' threads, not this process's
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
