import csv
import pickle

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lm_music.checkpoints import load_checkpoint
from lm_music.threads import usable_cores
from tests.conftest import ROOT, TINY_MUSIC, data_path, run_script

JSB = [
    "experiment=jsb_chorales",
    f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
    *TINY_MUSIC,
    "trainer.max_steps=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.sample_logger.every_n_epochs=100",
]


def _summary(sweep_dir):
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_multirun_leaves_a_run_dir_per_job_and_a_summary(tmp_path):
    result = run_script(
        "train.py",
        "-m",
        *JSB,
        "model.hidden_size=8,12",
        "seed=2",
        "logger=many",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
    assert jobs == ["0", "1"]
    rows = _summary(tmp_path)
    assert [r["job"] for r in rows] == jobs
    assert "model.hidden_size=12" in rows[1]["overrides"] and "seed=2" in rows[1]["overrides"]
    assert all(float(r["val/nll"]) > 0 and float(r["test/nll"]) > 0 for r in rows)
    for job in jobs:  # W&B is finished between jobs: one offline run per job
        assert len(list((tmp_path / job / "wandb").glob("offline-run-*"))) == 1
        hidden = load_checkpoint(tmp_path / job / "checkpoints" / "last.ckpt")["hyper_parameters"][
            "hidden_size"
        ]
        assert f"model.hidden_size={hidden}" in rows[int(job)]["overrides"]


@pytest.mark.slow  # two trainings at once on every core: an end-to-end run
def test_joblib_launcher_runs_jobs_in_parallel_on_a_share_of_the_cores_each(tmp_path):
    result = run_script(
        "train.py",
        "-m",
        *JSB,
        "threads=auto",
        "seed=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stderr + result.stdout
    assert [r["job"] for r in _summary(tmp_path)] == ["0", "1"]
    cores = usable_cores()
    for job in ("0", "1"):
        log = (tmp_path / job / "train.log").read_text()
        assert f"threads: {max(1, cores // 2)} (auto: 2 processes of this run share {cores} cores" in log


@pytest.mark.slow
def test_optuna_search_resumes_its_study_and_prints_the_best(tmp_path):
    args = [
        "train.py",
        *JSB,
        "hparams_search=pianoroll_optuna",
        f"paths.log_dir={tmp_path}",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        "hydra.sweeper.params={model.hidden_size: 'choice(8, 16)', model.optimizer.lr: 'interval(0.001, 0.01)'}",
    ]
    first = run_script(*args, f"hydra.sweep.dir={tmp_path}/first")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Best parameters" in first.stderr + first.stdout
    second = run_script(*args, f"hydra.sweep.dir={tmp_path}/second")
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="jsb_chorales_music", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 4 and all(t.value > 0 for t in study.trials)
    assert len(_summary(tmp_path / "first")) == 2


def test_sweep_on_a_metric_that_does_not_exist_fails_at_the_first_job(tmp_path):
    result = run_script(
        "train.py", "-m", *JSB, "seed=1,2", "optimized_metric=val/acc", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "optimized_metric='val/acc' is not a metric of this run" in result.stderr
    assert "val/nll" in result.stderr
    assert not (tmp_path / "1").exists()


def test_unknown_group_option_lists_the_valid_ones():
    result = run_script("train.py", "experiment=jsb", "logger=tensorbord")
    assert result.returncode != 0
    assert "experiment/jsb" in result.stderr and "jsb_chorales" in result.stderr


@pytest.mark.slow
def test_ddp_sweep_runs_each_job_once_with_its_own_parameters(tmp_path):
    """strategy=ddp inside a multirun would re-launch the sweep in the child rank; it runs as ddp_spawn."""
    result = run_script(
        "train.py",
        "-m",
        *JSB,
        "trainer=ddp_sim",
        "trainer.strategy=ddp",
        "test=false",
        "model.hidden_size=8,12",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using ddp_spawn" in result.stdout + result.stderr
    job_dirs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert job_dirs == ["0", "1"]
    for job, hidden in (("0", 8), ("1", 12)):
        checkpoint = load_checkpoint(tmp_path / job / "checkpoints" / "last.ckpt")
        assert checkpoint["hyper_parameters"]["hidden_size"] == hidden
        assert checkpoint["state_dict"]["net.rnn.weight_hh_l0"].shape == (4 * hidden, hidden)
        assert checkpoint["global_step"] == 2


def test_submitit_slurm_launcher_config_composes_and_the_job_pickles(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "trainer=ddp"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.partition == "gpu" and cfg.trainer.strategy == "ddp"
    import train

    assert pickle.loads(pickle.dumps(train.main)) is train.main
    assert pickle.loads(pickle.dumps(cfg)) == cfg
