"""Benchmark test NLL: train one configuration with train.py and print one JSON line with its figures.

    python bench/nll.py experiment=jsb_chorales data.path=../shared/data/polyphonic/JSB_Chorales.mat \\
        model.hidden_size=512 model.dropout=0.5 ...

Every argument is passed to train.py; the run goes to bench/runs/ unless hydra.run.dir= is given.
"""

import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(overrides: list[str]) -> None:
    run_dir = next((a.split("=", 1)[1] for a in overrides if a.startswith("hydra.run.dir=")), None)
    if run_dir is None:
        run_dir = str(ROOT / "bench" / "runs" / time.strftime("%Y%m%d-%H%M%S"))
        overrides = [*overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer.enable_progress_bar=false", *overrides], check=True
    )
    seconds = time.perf_counter() - start
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    row = {
        "benchmark": "test_nll",
        "overrides": overrides,
        **{k: metrics.get(k) for k in ("test/nll", "val/nll", "test/frame_acc", "test/bpc", "val/bpc")},
        "epochs": metrics["epoch"],
        "steps": metrics["global_step"],
        "wall_seconds": round(seconds, 1),
        "date": date.today().isoformat(),
        **hardware(),
    }
    print(json.dumps({k: v for k, v in row.items() if v is not None}))


if __name__ == "__main__":
    main(sys.argv[1:])
