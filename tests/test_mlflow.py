"""logger=mlflow against a real MLflow server: `mlflow server` (its own venv, lm_music.mlflow_server) on a free
127.0.0.1 port over a SQLite store in a temporary folder; runs of train.py read back through MLflow's client,
a joblib sweep, a SIGTERM and resume, and the MLflow UI in headless Chromium."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lm_music.errors import UserError
from lm_music.mlflow_server import SERVER_VENV, server_command, server_venv
from lm_music.tracking_mlflow import RUN_FILE, check_server
from tests.browser import CHROMEDRIVER, CHROMIUM, chromium, wait_for
from tests.conftest import LYRICS_CSV, ROOT, TINY_LYRICS, TINY_MUSIC, data_path, serve

SCREENSHOT = ROOT / "tests" / "screenshots" / "mlflow.png"  # the README points here
JSB = [
    "experiment=jsb_chorales",
    f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
    *TINY_MUSIC,
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=mlflow",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(*args: str, uri: str | None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_server_that_does_not_answer_is_one_line_at_once():
    port = _free_port()  # nothing listens there
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        check_server(f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert f"no MLflow server answers at http://127.0.0.1:{port}" in message and "\n" not in message
    assert "python -m lm_music.mlflow_server" in message and "logger=tensorboard" in message


def test_a_uri_that_answers_but_is_not_mlflow_says_so(tmp_path):
    with serve(tmp_path) as url, pytest.raises(UserError) as err:  # a real HTTP server, no /health
        check_server(url)
    assert str(err.value) == f"logger=mlflow: {url} answers, but is not an MLflow server (GET /health: 404)"


@pytest.mark.slow
def test_train_py_against_a_port_where_nothing_listens_stops_with_one_line_at_the_start():
    port = _free_port()
    start = time.monotonic()
    result = _train(*JSB, "trainer.max_steps=1", uri=f"http://127.0.0.1:{port}", timeout=120)
    seconds = time.monotonic() - start
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: logger=mlflow: no MLflow server answers at http://127.0.0.1:{port}"), last
    assert seconds < 60, f"{seconds:.1f} s"
    print(f"train.py stopped with the line in {seconds:.1f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """A real `mlflow server` (SQLite store, proxied artifacts) on a free port; yields its URL."""
    try:
        mlflow = server_venv()
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(
            f"no MLflow server: making its venv {SERVER_VENV} (pip install mlflow from PyPI) failed: {err}"
        )
    store = tmp_path_factory.mktemp("mlflow_store")
    port = _free_port()
    log = store / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner processes
    with log.open("w") as out:
        process = subprocess.Popen(
            server_command(mlflow, store, port),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers too are stopped with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while time.monotonic() - start < 300:
            assert process.poll() is None, f"mlflow server exited: {log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail(f"mlflow server did not answer in 300 s: {log.read_text()[-3000:]}")
        print(f"mlflow server up in {time.monotonic() - start:.1f} s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id])


def _run_of(client, experiment: str, run_dir: Path):
    (run,) = [r for r in _runs(client, experiment) if r.data.tags.get("lm_music.run_dir") == str(run_dir)]
    return run


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    """Every artifact file of the run, by its path."""
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def _steps(client, run_id: str, metric: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, metric)]


@pytest.fixture(scope="module")
def music_run(server, tmp_path_factory) -> Path:
    """A tiny JSB Chorales model trained by train.py with logger=mlflow against the server."""
    run_dir = tmp_path_factory.mktemp("jsb") / "run"
    result = _train(
        *JSB,
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run_dir}",
        uri=server,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_a_music_run_has_its_params_curves_tags_and_samples_on_the_server(server, music_run):
    client = _client(server)
    metrics = json.loads((music_run / "metrics.json").read_text())
    run = _run_of(client, "jsb_chorales", music_run)
    assert run.info.status == "FINISHED"
    assert json.loads((music_run / RUN_FILE).read_text())["run_id"] == run.info.run_id
    params = run.data.params
    assert params["model/hidden_size"] == "32" and params["data/frames_per_beat"] and params["seed"] == "0"
    assert _steps(client, run.info.run_id, "train/loss") == [0, 1, 2, 3, 4, 5]
    assert {2, 5, 6} <= set(_steps(client, run.info.run_id, "val/nll"))  # Lightning's: one behind
    assert run.data.metrics["test/nll"] == pytest.approx(metrics["test/nll"], rel=1e-6)
    assert run.data.metrics["val/nll"] == pytest.approx(metrics["val/nll"], rel=1e-6)
    tags = run.data.tags
    assert tags["lm_music.commit"] == metrics["commit"]
    assert tags["lm_music.experiment"] == "conf/experiment/jsb_chorales.yaml"
    assert (
        "logger=mlflow" in tags["lm_music.overrides"] and "trainer.max_steps=6" in tags["lm_music.overrides"]
    )
    assert tags["mlflow.runName"] == "run"
    files = _artifacts(client, run.info.run_id)
    for step in (2, 5):
        assert {
            f"samples/step_{step:06d}/{name}" for name in ("roll_0.png", "midi_0.mid", "audio_0.wav")
        } <= files
    assert {"metrics.json", "hydra/config.yaml", "hydra/overrides.yaml"} <= files
    saved = json.loads(Path(client.download_artifacts(run.info.run_id, "metrics.json")).read_text())
    assert saved == metrics
    midi = Path(client.download_artifacts(run.info.run_id, "samples/step_000005/midi_0.mid")).read_bytes()
    assert midi.startswith(b"MThd")


@pytest.mark.slow
def test_a_lyrics_run_has_its_text_samples_and_with_log_model_its_best_checkpoint(server, tmp_path):
    run_dir = tmp_path / "run"
    result = _train(
        "experiment=lyrics_conditional",
        *TINY_LYRICS,
        f"data.path={LYRICS_CSV}",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=mlflow",
        "logger.mlflow.log_model=true",
        f"hydra.run.dir={run_dir}",
        uri=server,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = _client(server)
    run = _run_of(client, "lyrics_conditional", run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test/bpc"] == pytest.approx(metrics["test/bpc"], rel=1e-6)
    files = _artifacts(client, run.info.run_id)
    texts = [f for f in files if f.startswith("samples/step_") and f.endswith(").txt")]  # "ARTIST (0).txt"
    assert len(texts) >= 2, files
    written = [Path(client.download_artifacts(run.info.run_id, text)).read_text() for text in texts]
    assert any(text.strip() for text in written)  # after 4 steps some samples end at once: not all
    best = Path(metrics["best_checkpoint"])
    assert f"{best.stem}/{best.name}" in files
    assert "best" in Path(client.download_artifacts(run.info.run_id, f"{best.stem}/aliases.txt")).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("store", ["server", "local"])
def test_a_joblib_sweep_of_two_parallel_jobs_makes_two_runs_in_one_experiment(server, tmp_path, store):
    """Both jobs find the new experiment missing at once: neither fails creating it (a server's SQLite store
    refuses the second; the local file store is locked while one looks it up and makes it)."""
    task = f"sweep_{store}_{os.getpid()}_{time.time_ns()}"  # an experiment that does not exist yet
    sweep = tmp_path / "sweep"
    result = _train(
        "-m",
        *JSB,
        "trainer.max_steps=2",
        "callbacks.sample_logger.every_n_epochs=100",
        f"task_name={task}",
        "seed=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.sweep.dir={sweep}",
        uri=server if store == "server" else None,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if store == "local":
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store, in maintenance mode
    client = _client(server if store == "server" else f"file:{tmp_path / 'logs' / 'mlruns'}")
    runs = _runs(client, task)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["lm_music.job"] for r in runs} == {"0", "1"}
    assert {r.data.tags["lm_music.sweep_dir"] for r in runs} == {str(sweep)}
    assert {r.data.params["seed"] for r in runs} == {"1", "2"}
    assert {r.data.tags["mlflow.runName"] for r in runs} == {"sweep job 0", "sweep job 1"}


@pytest.mark.slow
def test_a_sigterm_and_a_resume_keep_one_run_and_one_history(server, tmp_path):
    run_dir, out, marker = tmp_path / "run", tmp_path / "out", tmp_path / "paused"
    common = [
        *JSB,
        "data.batch_size=2",
        "trainer.limit_train_batches=4",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "test=false",
        f"hydra.run.dir={run_dir}",
    ]
    pause = ["+callbacks.pause._target_=tests.faults.PauseAt", "+callbacks.pause.step=6"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": server}
    with out.open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "train.py", *common, *pause, f"+callbacks.pause.marker={marker}"],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    while not marker.exists():  # the run waits at step 6, mid-epoch, for the signal
        assert process.poll() is None, out.read_text()[-3000:]
        assert time.monotonic() < deadline, "no step 6 in 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) != 0
    assert "interrupted at step" in out.read_text(), out.read_text()[-3000:]
    client = _client(server)
    first = _run_of(client, "jsb_chorales", run_dir)
    assert first.info.status == "FAILED"  # stopped, not finished

    result = _train(*common, "ckpt_path=last", uri=server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Changing param values" not in result.stderr + result.stdout
    run = _run_of(client, "jsb_chorales", run_dir)  # still one run of this folder
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert "ckpt_path=last" in run.data.tags["lm_music.resumed_with"]
    assert run.data.params["ckpt_path"] == "None"  # the parameters of the run's start
    # Every step once at least: the steps the killed process logged after its checkpoint come again.
    assert sorted(set(_steps(client, run.info.run_id, "train/loss"))) == list(range(12))
    assert {3, 7, 11} <= set(_steps(client, run.info.run_id, "val/nll"))  # each epoch's end, one behind


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs /usr/bin/chromium and /usr/bin/chromedriver",
)
def test_the_mlflow_ui_shows_the_run_and_its_metric_chart(server, music_run):
    client = _client(server)
    run = _run_of(client, "jsb_chorales", music_run)
    with chromium() as browser:
        browser.get(f"{server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics")
        wait_for(browser, "body", 120, check=lambda e: "train/loss" in e.text and "val/nll" in e.text)
        wait_for(browser, ".js-plotly-plot, svg.main-svg, canvas", 120)
        time.sleep(2)  # the charts' last drawing
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
