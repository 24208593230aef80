"""What a run prints: a line an epoch when stdout is a file, no noise; the Trainer arguments of daily use."""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_MUSIC, compose_train, data_path, train_run

JSB = ["experiment=jsb_chorales", f"data.path={data_path('polyphonic/JSB_Chorales.mat')}", *TINY_MUSIC]
EPOCH_LINE = re.compile(
    r"epoch (\d+)/3 \| step (\d+) \| train/loss [\d.]+ \| val/loss [\d.]+ \| val/nll [\d.]+ \| val/nll_all [\d.]+ \| "
    r"val/frame_acc [\d.]+ \| elapsed \d+:\d\d:\d\d \| left ~\d+:\d\d:\d\d$"
)


def test_a_run_logging_to_a_file_writes_a_line_an_epoch_and_no_noise(tmp_path):
    log = tmp_path / "out.log"
    with open(log, "w") as out:  # stdout is a file, as with nohup, SLURM or `> log`
        subprocess.run(
            [
                sys.executable,
                "train.py",
                *JSB,
                "trainer.enable_progress_bar=true",
                "trainer.max_epochs=3",
                "trainer.limit_train_batches=4",  # fewer batches than the logging interval
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )
    text = log.read_text()
    epochs = [EPOCH_LINE.search(line) for line in text.splitlines() if "| step " in line]
    assert [(m.group(1), m.group(2)) for m in epochs if m] == [("1", "4"), ("2", "8"), ("3", "12")], text
    assert "━" not in text  # no bar
    assert re.search(r"model: PianoRollRNN, [\d,]+ parameters \(", text)
    for noise in ("litlogger", "LeafSpec", "FLOPs", "smaller than the logging interval"):
        assert noise not in text, noise
    assert text.count("threads: 1 (threads=1)") == 1
    # train.log in the run folder has the same lines.
    assert (
        len([line for line in (tmp_path / "run" / "train.log").read_text().splitlines() if "| step " in line])
        == 3
    )


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_time=00:00:10:00",
        "trainer.min_epochs=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.fast_dev_run=true",
        "trainer.overfit_batches=2",
        "trainer.profiler=simple",
        "trainer.detect_anomaly=true",
        "trainer.enable_model_summary=false",
    ],
)
def test_the_trainer_arguments_of_daily_use_need_no_plus(tmp_path, override):
    key, value = override.split("=")
    assert str(compose_train(tmp_path, [override]).trainer[key.split(".")[1]]).lower() == value


def test_a_time_budget_stops_training(tmp_path):
    # Epochs of two batches: several end within the 3 s, however busy the machine.
    budget = ["trainer.max_epochs=1000", "trainer.max_time=00:00:00:03", "trainer.limit_train_batches=2"]
    metrics = train_run(tmp_path, [*JSB, *budget, "trainer.limit_val_batches=1"])
    assert 0 < metrics["epoch"] < 1000 and metrics["test/nll"] > 0
