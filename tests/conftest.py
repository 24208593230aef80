import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lm_music.errors import UserError
from tests.data import QuietHandler, locate

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = locate()  # $LM_MUSIC_TEST_DATA, ../shared/data, or a cache filled on first use: tests/data.py


def pytest_sessionstart(session) -> None:
    try:
        TEST_DATA.fill()
    except UserError as error:
        pytest.exit(
            f"error: {error}. See tests/data.py for where the tests look for their data.", returncode=2
        )


@contextmanager
def serve(directory: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving `directory`; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def data_path(path: str) -> Path:
    """A file or folder of the test data by its path there ("midi/pop909"): the only way tests reach their
    data, so that each one has its public source in tests/data_sources.tsv (a fresh clone fetches only those;
    tests/test_data_locator.py walks every path the tests ask for). A file with no public source that is not
    here skips the test, naming it."""
    if not TEST_DATA.rows(path):
        pytest.fail(
            f"the tests ask for {path}, which has no row in tests/data_sources.tsv: add its public source "
            f"(or a row of kind none, whose tests skip where it is missing)",
            pytrace=False,
        )
    found = TEST_DATA.root / path
    if not found.exists() and all(row.kind == "none" for row in TEST_DATA.rows(path)):
        pytest.skip(
            f"{path} is not in {TEST_DATA.root} and has no public source: set LM_MUSIC_TEST_DATA to a folder with it"
        )
    return found  # the others are there once the session starts: fill() fetched or made them


LYRICS_CSV = data_path("lyrics/songdata_head.csv")


# A model small enough to train in seconds on two cores; the configs' own sizes are the original's. One
# thread: fastest for these sizes, and the same float sums whatever else runs (tests compare weights).
TINY_LYRICS = [
    "threads=1",
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


# Event-token models as small: the experiment's settings shrunk, and its Transformer or LSTM.
TINY_EVENTS = [
    "experiment=pop909_events",
    "threads=1",
    "model.optimizer.lr=0.01",
    "data.max_len=128",
    "data.batch_size=8",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_logger.every_n_epochs=1",
    "callbacks.sample_logger.length=32",
    "callbacks.sample_logger.num_samples=1",
    "callbacks.sample_quality.every_n_epochs=1",
    "callbacks.sample_quality.num_samples=2",
    "callbacks.sample_quality.length=64",
    "logger=csv",
]
TINY_TRANSFORMER = ["model.d_model=32", "model.n_layer=1", "model.n_head=2", "model.context=64"]


def compose_train(output_dir: Path, overrides: list[str]):
    """The train config as `python train.py OVERRIDES` would compose it, writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def sample_run(overrides: list[str]) -> list[Path]:
    """`python sample.py OVERRIDES` in this process; return the files written."""
    from lm_music import options
    from lm_music.generation import sample

    options.register()  # as sample.py does
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return sample(compose("sample", overrides=overrides))[1]


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


TINY_MUSIC = [
    "threads=1",
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
            f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
            *TINY_MUSIC,
            "trainer.max_epochs=2",  # test/nll 11.1 (10.9 after 4 epochs): the tests ask < 20
        ],
    )
    return out


@pytest.fixture(scope="session")
def infill_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny Transformer trained to infill with controls (experiment=pop909_infill), 30 steps on 4 POP909
    songs; its data removed after, so what samples from it has nothing but the checkpoint."""
    root = tmp_path_factory.mktemp("infill")
    data = root / "pop909"
    for split, count in (("train", 4), ("valid", 2), ("test", 2)):
        (data / split).mkdir(parents=True)
        for file in sorted((data_path("midi/pop909") / split).glob("*.mid"))[:count]:
            shutil.copy(file, data / split)
    tiny = [o for o in TINY_EVENTS if not o.startswith("experiment=")]
    overrides = [*tiny, *TINY_TRANSFORMER, "experiment=pop909_infill", "model.context=256"]
    overrides += [f"data.path={data}", f"paths.data_dir={root / 'cache'}", "data.max_len=256"]
    overrides += ["trainer.max_steps=30", "callbacks.sample_quality.every_n_epochs=0"]
    metrics = train_run(root / "run", overrides)
    shutil.rmtree(data)
    return root / "run" / "checkpoints" / "last.ckpt", metrics
