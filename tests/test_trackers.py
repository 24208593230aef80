import json
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import TINY_MUSIC, data_path, train_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def tensorboard_server(logdir: Path):
    """A real TensorBoard server on 127.0.0.1 over one run's log dir."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--load_fast=false",
            "--reload_interval=1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if _get(f"{base}/data/runs"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("TensorBoard did not come up within 60 s")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def _tags(base: str, plugin: str) -> set:
    return {tag for tags in _get(f"{base}/data/plugin/{plugin}/tags").values() for tag in tags}


def _final_metrics(base: str) -> tuple[set, dict]:
    """Hyperparameter names and final metric values of the run, as the HParams tab shows them."""
    query = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 100,
    }
    (group,) = _get(f"{base}/data/plugin/hparams/session_groups", query)["sessionGroups"]
    return set(group["hparams"]), {m["name"]["tag"]: m["value"] for m in group["metricValues"]}


def test_tensorboard_serves_lyrics_scalars_text_and_hparams(lyrics_run):
    metrics = json.loads((lyrics_run / "metrics.json").read_text())
    with tensorboard_server(lyrics_run / "tensorboard") as base:
        assert {"train/loss", "val/loss", "val/bpc"} <= _tags(base, "scalars")
        assert any(tag.startswith("samples/") and "ABBA" in tag for tag in _tags(base, "text"))
        hparams, final = _final_metrics(base)
    assert {"model/hidden_size", "data/batch_size", "seed"} <= hparams
    assert final["test/bpc"] == pytest.approx(metrics["test/bpc"], rel=1e-5)


def test_tensorboard_serves_music_scalars_images_audio_and_hparams(jsb_run):
    metrics = json.loads((jsb_run / "metrics.json").read_text())
    with tensorboard_server(jsb_run / "tensorboard") as base:
        assert {"train/loss", "val/nll", "val/frame_acc"} <= _tags(base, "scalars")
        assert "samples/roll_0" in _tags(base, "images")
        assert "samples/audio_0" in _tags(base, "audio")
        hparams, final = _final_metrics(base)
    assert {"model/hidden_size", "model/tbptt_steps", "data/frames_per_beat"} <= hparams
    assert final["test/nll"] == pytest.approx(metrics["test/nll"], rel=1e-5)


def test_wandb_runs_offline_without_login(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    metrics = train_run(
        tmp_path,
        [
            "experiment=jsb_chorales",
            f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
            *TINY_MUSIC,
            "logger=many",
            "trainer.max_steps=3",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
        ],
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    # Offline runs keep the summary in here; W&B's service process writes it, and its last records can reach
    # the disk a moment after wandb.finish() returns: wait for them (up to a minute), then assert.
    record_file = next(runs[0].glob("run-*.wandb"))
    for _ in range(600):
        records = record_file.read_bytes()
        if b"test/nll" in records:
            break
        time.sleep(0.1)
    assert b"test/nll" in records and b"model/hidden_size" in records
    assert list((runs[0] / "files" / "media" / "images" / "samples").glob("roll_0_*.png"))
    assert list((runs[0] / "files" / "media" / "audio" / "samples").glob("audio_0_*.wav"))
    assert metrics["test/nll"] > 0
    assert (tmp_path / "csv" / "metrics.csv").read_text().count("val/nll") >= 1
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
