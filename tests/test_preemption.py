"""Runs that survive pre-emption: SIGTERM (SLURM's pre-emption and time limit) and SIGKILL at any moment, each
followed by `ckpt_path=last`, with stdout to a file and every tracker. Kills are triggered by observed progress
(a marker the run writes, or a step in metrics.csv), never by a fixed sleep, and the tests assert decisions
(weights, rows, files), not timings."""

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lm_music.checkpoints import load_checkpoint
from tests.conftest import ROOT, TINY_MUSIC, data_path, train_run
from tests.faults import assert_same_weights, last_logged_step

# 8 batches an epoch, 4 epochs; samples logged every epoch, a CSV row and a TensorBoard point every step.
EPOCH = 8
COMMON = [
    "experiment=jsb_chorales",
    f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
    *TINY_MUSIC,
    "data.batch_size=2",
    f"trainer.limit_train_batches={EPOCH}",
    "trainer.limit_val_batches=2",
    "trainer.max_epochs=4",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=true",  # with stdout to a file: a line an epoch (callbacks.EpochLines)
    "test=false",
    "seed=3",
]
TOTAL_STEPS = 4 * EPOCH
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
# Where the three SIGTERMs land: mid-epoch, at an epoch's end (after its validation), mid-epoch again.
PAUSES = [("train", 5), ("val", 2 * EPOCH), ("train", 3 * EPOCH - 3)]


def _start(run_dir: Path, overrides: list[str], out: Path) -> subprocess.Popen:
    """`python train.py ... > out 2>&1`, as a batch job runs it."""
    with open(out, "w") as stdout:
        return subprocess.Popen(
            [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            env=ENV,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )


def _wait_for(process: subprocess.Popen, ready, out: Path, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"ended before {what}:\n{out.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.02)


def _csv_rows(path: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: float(v) for k, v in row.items() if v != ""} for row in rows]


def _assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    for a, b in zip(got, want):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7), (a, b)


def _scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out.update({f"image:{tag}": [(e.step, 0.0) for e in acc.Images(tag)] for tag in acc.Tags()["images"]})
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole")
    train_run(run_dir, [*COMMON, "logger=many"])
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["tensorboard", "csv", "wandb", "many"])
def test_three_sigterms_and_resumes_reach_the_uninterrupted_run(tmp_path, uninterrupted, logger):
    """`python train.py ... > out` stopped by SIGTERM three times (mid-epoch, at an epoch's end, mid-epoch) and
    resumed with ckpt_path=last each time ends with the weights, the checkpoints, the curves and the samples
    of a run that was never interrupted."""
    run_dir = tmp_path / "run"
    for number, (at, step) in enumerate(PAUSES):
        marker, out = tmp_path / f"paused{number}", tmp_path / f"out{number}"
        pause = [
            "+callbacks.pause._target_=tests.faults.PauseAt",
            f"+callbacks.pause.step={step}",
            f"+callbacks.pause.at={at}",
            f"+callbacks.pause.marker={marker}",
        ]
        resume = ["ckpt_path=last"] if number else []
        process = _start(run_dir, [*COMMON, f"logger={logger}", *pause, *resume], out)
        _wait_for(process, marker.exists, out, f"step {step}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=300) != 0
        text = out.read_text()
        assert "Traceback" not in text and f"interrupted at step {step}: saved" in text, text[-3000:]
        assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == step
    final = train_run(run_dir, [*COMMON, f"logger={logger}", "ckpt_path=last"])
    assert final["global_step"] == TOTAL_STEPS
    assert (run_dir / "metrics.json").is_file()

    assert_same_weights(uninterrupted / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "last.ckpt")
    # The folder keeps what conf/callbacks/default.yaml says, and the best is the whole run's best.
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    assert (
        Path(final["best_checkpoint"]).name
        == Path(json.loads((uninterrupted / "metrics.json").read_text())["best_checkpoint"]).name
    )
    # The line of each epoch that ended in a stopped process (the third ends in the last one, in this
    # process), with the mean training loss of the whole epoch: the first resumed in its middle.
    lines = "".join((tmp_path / f"out{n}").read_text() for n in range(len(PAUSES)))
    steps = [r for r in _csv_rows(uninterrupted / "csv" / "metrics.csv") if "train/loss" in r]
    for epoch in (1, 2):
        mean = sum(r["train/loss"] for r in steps[(epoch - 1) * EPOCH : epoch * EPOCH]) / EPOCH
        assert f"epoch {epoch}/4 | step {epoch * EPOCH} | train/loss {mean:.4g} |" in lines
    if logger in ("csv", "many"):  # the same file, every column, no row lost or doubled
        _assert_same_rows(
            _csv_rows(run_dir / "csv" / "metrics.csv"), _csv_rows(uninterrupted / "csv" / "metrics.csv")
        )
    if logger in ("tensorboard", "many"):  # the same folder; the curves and samples as one run's
        got, want = _scalars(run_dir / "tensorboard"), _scalars(uninterrupted / "tensorboard")
        assert got.keys() == want.keys()
        for tag in want:
            assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
            assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want[tag]], rel=1e-5), tag
    if logger in ("wandb", "many"):  # one W&B run: every process's offline folder has its id
        runs = sorted((run_dir / "wandb").glob("offline-run-*"))
        assert len(runs) == len(PAUSES) + 1
        assert len({r.name.rsplit("-", 1)[1] for r in runs}) == 1


KILLS = 12
IN_SAVE = (3, 7)  # these kills land inside a save: a new best written, last.ckpt not yet (tests/faults.py)


def _complete_steps(metrics_csv: Path) -> set[int]:
    """The steps of the training rows on disk, without a last line a kill cut short (a resume drops it)."""
    text = metrics_csv.read_text() if metrics_csv.is_file() else ""
    rows = csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1]))
    return {int(r["step"]) for r in rows if r.get("train/loss")}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_each_time(tmp_path):
    """SIGKILL (no handler runs: an OOM kill, a node lost, `scancel --signal=KILL`) at a random moment after
    observed progress, 12 times, with a checkpoint written at every step so that kills land inside saves too;
    each `ckpt_path=last` resume starts, the run ends with its metrics.json after exactly 8 epochs of 8 batches
    (in the CSV each step once, in its epoch), with the weights of a run never stopped, and checkpoints/ holds
    the two files it keeps (the run's best by val/loss over the whole run, and last.ckpt)."""
    rng = random.Random(21)
    overrides = [
        *COMMON,
        "trainer.max_epochs=8",
        "model.optimizer.lr=0.001",  # val/loss falls at every validation: a kill in IN_SAVE finds a new best
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=1",
        "+callbacks.model_checkpoint.every_n_train_steps=1",
    ]
    run_dir, metrics_csv = tmp_path / "killed", tmp_path / "killed" / "csv" / "metrics.csv"
    last = run_dir / "checkpoints" / "last.ckpt"
    left_temp_files = 0  # kills that landed inside a checkpoint write
    # A kill after a checkpoint written at a batch's end and before that batch's row: the row is lost (open,
    # BENCHMARKS.md, reliability); the resumed run does not train the batch again.
    rows_lost = set()
    kills = []  # (the step resumed from, the step of last.ckpt after the kill)
    for kill in range(KILLS):
        resumed_at = load_checkpoint(last)["global_step"] if kill else 0
        # Past the rows a killed process wrote after its checkpoint, which the file keeps until the resumed
        # run's first batch: the kill comes after this process's own progress.
        target = min(max(resumed_at, last_logged_step(metrics_csv)) + rng.randint(1, 3), 8 * EPOCH - 2)
        out = tmp_path / f"out{kill}"
        resume = ["ckpt_path=last"] if kill else []
        if kill in IN_SAVE:
            marker = tmp_path / f"in_save{kill}"
            fault = [
                "+callbacks.pause._target_=tests.faults.PauseInSave",
                f"+callbacks.pause.marker={marker}",
            ]
            process = _start(run_dir, [*overrides, *resume, *fault], out)
            _wait_for(process, marker.exists, out, "a save after a new best")
            process.kill()
            process.wait(timeout=60)
            names = {p.name for p in last.parent.iterdir()}
            # The new best, unknown to last.ckpt.
            assert marker.read_text() in names and len(names) >= 2, names
        else:
            process = _start(run_dir, [*overrides, *resume], out)
            _wait_for(
                process,
                lambda target=target, out=out, kill=kill: (
                    last.is_file()
                    and (not kill or "Restored all states" in out.read_text())  # Lightning's: resume done
                    and last_logged_step(metrics_csv) >= target
                ),
                out,
                f"step {target} (resumed at {resumed_at})",
            )
            time.sleep(rng.uniform(0, 0.1))  # a random moment of the next step or two (25-40 steps/s here)
            process.kill()
            process.wait(timeout=60)
            assert process.returncode == -signal.SIGKILL, out.read_text()[-3000:]
            left_temp_files += any(p.name.endswith(".tmp") for p in last.parent.iterdir())
        saved = load_checkpoint(last)["global_step"]
        kills.append((resumed_at, saved))
        if saved - 1 not in _complete_steps(metrics_csv):
            rows_lost.add(saved - 1)
    for kill in IN_SAVE:  # the resume after each removed the best that its last.ckpt did not know
        assert "resumed: removed epoch" in (tmp_path / f"out{kill + 1}").read_text()
    final = train_run(run_dir, [*overrides, "ckpt_path=last"])
    print(
        f"{KILLS} kills survived ({len(IN_SAVE)} inside a save, {left_temp_files} inside a write), 0 failed"
        f" resumes; (resumed from, last.ckpt after the kill): {kills}; rows lost: {sorted(rows_lost)}"
    )
    assert final["global_step"] == 8 * EPOCH and (run_dir / "metrics.json").is_file()
    # Each step once, in its epoch: no epoch longer than its 8 batches (before: 72 steps, an epoch of 13
    # batches, after a resume from an epoch's last batch and a kill inside the next epoch).
    steps = [r for r in _csv_rows(metrics_csv) if "train/loss" in r]
    assert [int(r["step"]) for r in steps] == sorted(set(range(8 * EPOCH)) - rows_lost)
    assert all(int(r["epoch"]) == int(r["step"]) // EPOCH for r in steps)
    names = sorted(p.name for p in last.parent.iterdir())
    assert len(names) == 2 and "last.ckpt" in names and Path(final["best_checkpoint"]).name in names
    # The best is the best of the whole run: the lowest val/loss of every validation logged, over 13 processes.
    state = next(v for k, v in load_checkpoint(last)["callbacks"].items() if k.startswith("RunCheckpoint"))
    val_losses = [r["val/loss"] for r in _csv_rows(metrics_csv) if "val/loss" in r]
    assert float(state["best_model_score"]) == pytest.approx(min(val_losses[:-1]))  # the last: final validate
    # The weights of a run never stopped: every resume went on where its checkpoint was written.
    whole = tmp_path / "whole"
    train_run(whole, overrides)
    assert_same_weights(whole / "checkpoints" / "last.ckpt", last)


@pytest.mark.slow
def test_a_killed_sweep_run_again_keeps_the_finished_jobs_and_the_summary(tmp_path):
    """`train.py -m seed=1,2` killed (SIGKILL) in its second job, then the same command again with the same
    sweep folder and ckpt_path=last: the first job's results stay as they were, the second resumes, and
    summary.csv has both."""
    sweep = tmp_path / "sweep"
    command = [
        "-m",
        *[o for o in COMMON if not o.startswith("seed=")],
        "seed=1,2",
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=1",
        f"hydra.sweep.dir={sweep}",
    ]
    out = tmp_path / "out0"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "train.py", *command], cwd=ROOT, env=ENV, stdout=stdout, stderr=subprocess.STDOUT
        )
    second = sweep / "1"
    _wait_for(
        process,
        lambda: (
            (second / "checkpoints" / "last.ckpt").is_file()
            and last_logged_step(second / "csv" / "metrics.csv") >= EPOCH + 2
        ),
        out,
        "job 1's second epoch",
    )
    process.kill()
    process.wait(timeout=60)
    first = (sweep / "0" / "metrics.json").read_bytes()
    first_mtime = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    assert not (second / "metrics.json").exists() and not (sweep / "summary.csv").exists()

    again = subprocess.run(
        [sys.executable, "train.py", *command, "ckpt_path=last"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").read_bytes() == first
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == first_mtime
    assert json.loads((second / "metrics.json").read_text())["global_step"] == TOTAL_STEPS
    rows = list(csv.DictReader(io.StringIO((sweep / "summary.csv").read_text())))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert float(rows[0]["val/loss"]) == pytest.approx(json.loads(first)["val/loss"])


# --- the pieces, in this process (fast) ---------------------------------------------------------------------


STEP_SAVES = [
    *COMMON,
    "logger=csv",
    "+logger.csv.flush_logs_every_n_steps=1",
    "+callbacks.model_checkpoint.every_n_train_steps=1",
]


def test_a_resume_from_an_epochs_last_batch_then_a_kill_in_the_next_epoch_trains_each_epoch_once(tmp_path):
    """Issue 21's 72 of 64 steps, in this process: a checkpoint written in `on_train_batch_end` of an epoch's
    last batch (tests/faults.SaveAt: as Lightning's ModelCheckpoint(every_n_train_steps) and SaveOnInterrupt's
    Ctrl-C write it), resumed; the run stopped (tests/faults.CrashAt, as a kill would) inside the next epoch
    but one, resumed again. Lightning counted the epoch after the resumed one as over before it began (no
    `on_train_epoch_start` either), so the second resume trained it from its start again (35 steps for 32,
    an epoch of 11 batches); lm_music.resume.NextEpochAfterLastBatch has it counted as started."""
    from tests.faults import Crash

    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    at_last_batch = tmp_path / "last_batch.ckpt"
    save = ["+callbacks.save_at._target_=tests.faults.SaveAt", "+callbacks.save_at.step=16"]
    train_run(
        run_dir, [*STEP_SAVES, "trainer.max_epochs=2", *save, f"+callbacks.save_at.path={at_last_batch}"]
    )
    saved = load_checkpoint(at_last_batch)  # epoch 1's last batch, its validation and epoch end not yet done
    assert saved["global_step"] == 2 * EPOCH
    assert saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"]
    assert saved["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 1

    crash = 3 * EPOCH + 3  # epoch 2 whole, 3 batches of epoch 3
    stop = ["+callbacks.crash._target_=tests.faults.CrashAt", f"+callbacks.crash.step={crash}"]
    with pytest.raises(Crash):
        train_run(run_dir, [*STEP_SAVES, "trainer.max_epochs=4", f"ckpt_path={at_last_batch}", *stop])
    saved = load_checkpoint(last)
    assert saved["global_step"] == crash
    # Inside epoch 3: started, not processed (before: all four 3, an epoch that ended).
    assert saved["loops"]["fit_loop"]["epoch_progress"]["current"] == {
        "ready": 4,
        "started": 4,
        "processed": 3,
        "completed": 3,
    }

    final = train_run(run_dir, [*STEP_SAVES, "trainer.max_epochs=4", "ckpt_path=last"])
    assert final["global_step"] == 4 * EPOCH
    rows = [r for r in _csv_rows(run_dir / "csv" / "metrics.csv") if "train/loss" in r]
    assert [int(r["step"]) for r in rows] == list(range(4 * EPOCH))
    assert [int(r["epoch"]) for r in rows] == [epoch for epoch in range(4) for _ in range(EPOCH)]


def test_step_checkpoints_save_an_epochs_last_batch_after_its_validation_and_go_on_after_a_resume(tmp_path):
    """With `every_n_train_steps=1`: the save due at an epoch's last batch is written at the epoch's end, after
    its validation (the best is judged by that validation, and a resume from it goes on as the uninterrupted
    run does), and a resumed run saves at every step before its first validation too. Stopped inside an
    epoch and resumed, the run has the weights and the rows of one never stopped."""
    from tests.faults import Crash

    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    train_run(run_dir, [*STEP_SAVES, "trainer.max_epochs=2"])
    saved = load_checkpoint(last)
    assert saved["global_step"] == 2 * EPOCH
    assert saved["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 2  # after the epoch's end
    assert saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == EPOCH
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("RunCheckpoint"))
    val_losses = [r["val/loss"] for r in _csv_rows(run_dir / "csv" / "metrics.csv") if "val/loss" in r]
    # Before: the best was epoch001-step000009, saved a step after the validation that judged it.
    assert Path(state["best_model_path"]).name == "epoch001-step000016.ckpt"
    assert float(state["best_model_score"]) == pytest.approx(min(val_losses))

    crash = 2 * EPOCH + 3  # before the resumed run's first validation (before: no checkpoint after 16)
    stop = ["+callbacks.crash._target_=tests.faults.CrashAt", f"+callbacks.crash.step={crash}"]
    with pytest.raises(Crash):
        train_run(run_dir, [*STEP_SAVES, "trainer.max_epochs=3", "ckpt_path=last", *stop])
    assert load_checkpoint(last)["global_step"] == crash
    final = train_run(run_dir, [*STEP_SAVES, "trainer.max_epochs=3", "ckpt_path=last"])
    assert final["global_step"] == 3 * EPOCH

    whole = tmp_path / "whole"
    train_run(whole, [*STEP_SAVES, "trainer.max_epochs=3"])
    assert_same_weights(whole / "checkpoints" / "last.ckpt", last)
    _assert_same_rows(_csv_rows(run_dir / "csv" / "metrics.csv"), _csv_rows(whole / "csv" / "metrics.csv"))
    assert sorted(p.name for p in last.parent.iterdir()) == sorted(
        p.name for p in (whole / "checkpoints").iterdir()
    )


def test_a_checkpoint_write_cut_short_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    from lm_music.resume import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    io_plugin = AtomicCheckpointIO()
    io_plugin.save_checkpoint({"global_step": 1}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as a signal would, mid-write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io_plugin.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_resumed_csv_keeps_the_rows_saved_by_the_checkpoint_and_every_column(tmp_path):
    from lm_music.loggers import CSVLogger

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    # Three rows saved by the checkpoint, a fourth written after it, and a fifth a kill cut short.
    (csv_dir / "metrics.csv").write_text(
        "epoch,step,train/loss,val/loss\n0,0,3.0,\n0,1,2.5,\n0,1,,2.4\n0,2,2.2,\n0,3,2."
    )
    logger = CSVLogger(tmp_path, name="csv", version="", flush_logs_every_n_steps=1)
    logger.resume({"step": 2, "csv_rows": 3})
    logger.log_metrics({"train/loss": 2.0, "epoch": 0}, step=2)  # the row the killed process logged again
    logger.log_metrics({"val/loss": 1.9, "val/nll": 1.8, "epoch": 0}, step=3)  # a new column
    logger.finalize("success")
    rows = list(csv.DictReader(io.StringIO((csv_dir / "metrics.csv").read_text())))
    assert [(r["step"], r["train/loss"], r["val/loss"], r["val/nll"]) for r in rows] == [
        ("0", "3.0", "", ""),
        ("1", "2.5", "", ""),
        ("1", "", "2.4", ""),
        ("2", "2.0", "", ""),
        ("3", "", "1.9", "1.8"),
    ]
    assert logger.tracker_state() == {"csv_rows": 5}


def test_a_row_logged_after_a_batch_end_checkpoint_is_kept_when_its_batch_is_not_trained_again(tmp_path):
    from lm_music.loggers import CSVLogger

    (tmp_path / "csv").mkdir()
    # ModelCheckpoint saved at the end of batch 2 (step 1), before the row of that batch was logged.
    (tmp_path / "csv" / "metrics.csv").write_text("step,train/loss\n0,3.0\n1,2.5\n2,2.2\n")
    logger = CSVLogger(tmp_path, name="csv", version="", flush_logs_every_n_steps=1)
    logger.resume({"step": 1, "csv_rows": 1})
    logger.experiment  # noqa: B018  (created before fit, as the hyperparameters are logged)
    logger.start_at(2)  # the resumed run's first batch logs step 2
    logger.log_metrics({"train/loss": 2.1}, step=2)
    logger.finalize("success")
    assert (tmp_path / "csv" / "metrics.csv").read_text() == "step,train/loss\n0,3.0\n1,2.5\n2,2.1\n"


def test_a_fresh_csv_in_a_used_folder_starts_a_new_file(tmp_path):
    from lm_music.loggers import CSVLogger

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("step,old\n0,1\n")
    logger = CSVLogger(tmp_path, name="csv", version="")
    logger.log_metrics({"train/loss": 2.0}, step=0)
    logger.finalize("success")
    assert (tmp_path / "csv" / "metrics.csv").read_text() == "step,train/loss\n0,2.0\n"


def test_a_resume_removes_what_a_kill_left_that_the_checkpoint_does_not_know(tmp_path):
    from lm_music.resume import RunCheckpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    old_best, last = folder / "epoch001-step000010.ckpt", folder / "last.ckpt"
    for path in (old_best, last):
        path.write_bytes(b"x")
    os.utime(old_best, (1, 1))
    orphan, temp = folder / "epoch002-step000015.ckpt", folder / ".last.ckpt.abc123.tmp"
    for path in (orphan, temp):
        path.write_bytes(b"x")  # written after last.ckpt: the new best, the write a kill cut short
    mine = folder / "keep-me.txt"
    mine.write_text("not a checkpoint")
    callback = RunCheckpoint(dirpath=str(folder), monitor="val/loss", save_top_k=1, save_last=True)
    callback.dirpath = str(folder)
    callback.load_state_dict(
        {
            "dirpath": str(folder),
            "best_model_path": str(old_best),
            "best_model_score": torch.tensor(2.0),
            "best_k_models": {str(old_best): torch.tensor(2.0)},
            "kth_best_model_path": str(old_best),
            "kth_value": torch.tensor(2.0),
            "last_model_path": str(last),
        }
    )
    assert sorted(callback.tidy(last)) == sorted([orphan, temp])
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch001-step000010.ckpt",
        "keep-me.txt",
        "last.ckpt",
    ]
    assert callback.best_model_path == str(old_best)

    old_best.unlink()  # a kill after the old best was removed, before last.ckpt knew the new one
    callback.tidy(last)
    assert callback.best_k_models == {} and callback.best_model_path == ""
    assert callback.check_monitor_top_k(None, torch.tensor(9.0))  # so the next validation is kept


def test_a_run_folder_that_moved_keeps_its_best(tmp_path):
    from lm_music.resume import RunCheckpoint

    callback = RunCheckpoint(dirpath=str(tmp_path / "new"), monitor="val/loss")
    callback.load_state_dict(
        {
            "dirpath": "/old/checkpoints",
            "best_model_path": "/old/checkpoints/a.ckpt",
            "best_model_score": torch.tensor(1.0),
            "best_k_models": {"/old/checkpoints/a.ckpt": torch.tensor(1.0)},
            "kth_best_model_path": "/old/checkpoints/a.ckpt",
            "kth_value": torch.tensor(1.0),
            "last_model_path": "/old/checkpoints/last.ckpt",
        }
    )
    assert callback.best_model_path == str(tmp_path / "new" / "a.ckpt")
    assert callback.best_model_score == 1.0 and callback.last_model_path == str(
        tmp_path / "new" / "last.ckpt"
    )


def test_epoch_lines_continue_an_epoch_a_resume_starts_in_the_middle():
    from lm_music.callbacks import EpochLines

    before = EpochLines()
    before.on_train_epoch_start(None, None)
    before.on_train_batch_end(None, None, {"loss": torch.tensor(2.0)}, None, 0)
    state = before.state_dict()
    after = EpochLines()  # resumed mid-epoch: Lightning calls no on_train_epoch_start
    after.load_state_dict(state)
    after.on_train_batch_end(None, None, {"loss": torch.tensor(4.0)}, None, 1)
    assert float(after.loss_sum) / after.batches == 3.0
    fresh = EpochLines()
    fresh.on_train_batch_end(None, None, {"loss": torch.tensor(1.0)}, None, 0)  # the AttributeError
    assert fresh.batches == 1


def test_under_slurm_the_run_folder_is_the_job_and_a_requeued_job_resumes(tmp_path, monkeypatch):
    from lm_music.resume import auto_resume_path
    from lm_music.slurm import run_name

    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert run_name("2026-01-01_00-00-00") == "2026-01-01_00-00-00"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert auto_resume_path(tmp_path) is None  # not under SLURM: as before, only ckpt_path=last resumes
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert run_name("2026-01-01_00-00-00") == "slurm-4242"
    assert auto_resume_path(tmp_path) is None  # the job's first start
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert auto_resume_path(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # Lightning's SIGUSR1 requeue checkpoint, newer
    hpc.write_bytes(b"x")
    os.utime(tmp_path / "checkpoints" / "last.ckpt", (1, 1))
    assert auto_resume_path(tmp_path) == hpc
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert run_name("x") == "slurm-4240_2"


def test_the_run_folder_config_resolves_by_the_job_under_slurm(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import lm_music.resume  # noqa: F401  (its resolver, as train.py imports it)

    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    assert cfg.hydra.run.dir.endswith("bach_chorales/runs/slurm-777")
    assert cfg.hydra.sweep.dir.endswith("bach_chorales/multiruns/slurm-777")
