import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LYRICS_CSV = SHARED_DATA / "lyrics" / "songdata_head.csv"

# A model small enough to train in seconds on two cores; the configs' own sizes are the original's.
TINY_LYRICS = [
    f"data.path={LYRICS_CSV}",
    "data.max_len=200",
    "data.batch_size=16",
    "model.hidden_size=64",
    "model.embedding_dim=32",
    "model.artist_embedding_dim=16",
    "model.optimizer.lr=0.01",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_logger.length=40",
]


def compose_train(output_dir: Path, overrides: list[str]):
    """The train config as `python train.py OVERRIDES` would compose it, writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def train_run(output_dir: Path, overrides: list[str]) -> dict:
    """Run the training function in this process; return its metrics.json."""
    from lm_music.training import train

    train(compose_train(output_dir, overrides))
    return json.loads((output_dir / "metrics.json").read_text())


def run_script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run an entry point as a user would, in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def lyrics_run(tmp_path_factory) -> Path:
    """One trained tiny conditional lyrics model that several tests read (trained once per session)."""
    out = tmp_path_factory.mktemp("lyrics_run")
    train_run(
        out,
        [
            "experiment=lyrics_conditional",
            *TINY_LYRICS,
            "trainer.max_steps=60",
            "trainer.val_check_interval=30",
            "trainer.limit_val_batches=3",
        ],
    )
    return out


POLYPHONIC = SHARED_DATA / "polyphonic"
MIDI_DIR = SHARED_DATA / "midi"

TINY_MUSIC = [
    "model.hidden_size=32",
    "model.embedding_dim=16",
    "model.nade_hidden=16",
    "model.optimizer.lr=0.01",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_logger.every_n_epochs=1",
    "callbacks.sample_logger.num_samples=2",
    "callbacks.sample_logger.length=16",
]


@pytest.fixture(scope="session")
def chorale_cache(tmp_path_factory) -> Path:
    """A data dir in which music21's Bach chorales are built once (~40 s) for every test that needs them."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def jsb_run(tmp_path_factory) -> Path:
    """A tiny piano-roll model trained on the real JSB Chorales benchmark, shared by several tests."""
    out = tmp_path_factory.mktemp("jsb_run")
    train_run(
        out,
        [
            "experiment=jsb_chorales",
            f"data.path={POLYPHONIC / 'JSB_Chorales.mat'}",
            *TINY_MUSIC,
            "trainer.max_epochs=4",
        ],
    )
    return out
