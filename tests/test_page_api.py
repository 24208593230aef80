"""The page (python -m lm_music.app) as a program talks to it: gradio_client against the real server on a free
port, and the page's events in this process (the model kept between clicks, what a visitor may open)."""

import logging
import shutil

import pytest
from gradio_client import Client

from lm_music.app import Page, is_loopback
from tests.browser import serve_app
from tests.conftest import sample_run


@pytest.fixture(scope="module")
def served_off_loopback(lyrics_run, tmp_path_factory):
    """The page listening on every address (host=0.0.0.0), so it serves only runs_dir and the shipped models;
    the test talks to it on 127.0.0.1 only."""
    log = tmp_path_factory.mktemp("page") / "app.log"
    with serve_app(log, f"runs_dir={lyrics_run}", "threads=1", "host=0.0.0.0") as url:
        yield Client(url, verbose=False)


def test_the_endpoints_and_their_parameters_have_names(served_off_loopback, tmp_path):
    api = served_off_loopback.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/generate", "/choose_model"} <= set(api)
    names = [p["parameter_name"] for p in api["/generate"]["parameters"]]
    assert names == [
        "model_path",
        "prime",
        "artist",
        "top_k",
        "top_p",
        "prime_midi",
        "temperature",
        "length",
        "num_samples",
        "seed",
    ]
    outputs = served_off_loopback.predict(
        model_path="pretrained:bach_chorales", length=32, num_samples=1, seed=7, api_name="/generate"
    )
    # Each output is a component update ({"value": ..., "visible": ...}); files come back as local copies.
    shown = [o["value"] for o in outputs if isinstance(o, dict) and o.get("visible") and o.get("value")]
    assert [str(v).rsplit(".", 1)[-1] for v in shown] == ["png", "wav", "mid"]
    midi = shown[2]
    cli = tmp_path / "cli"
    sample_run(
        ["pretrained=bach_chorales", "num_samples=1", "length=32", "seed=7", "threads=1", f"out_dir={cli}"]
    )
    with open(midi, "rb") as page_midi:
        assert page_midi.read() == (cli / "sample_000.mid").read_bytes()


def test_off_loopback_a_visitor_opens_only_runs_dir_and_the_shipped_models(
    served_off_loopback, lyrics_run, tmp_path
):
    outside = tmp_path / "outside.ckpt"
    shutil.copy(lyrics_run / "checkpoints" / "last.ckpt", outside)
    for path in ("/etc/passwd", str(outside), str(tmp_path / "missing.ckpt")):
        with pytest.raises(Exception, match="serves only the shipped models and checkpoints under"):
            served_off_loopback.predict(model_path=path, api_name="/choose_model")
    inside = served_off_loopback.predict(
        model_path=str(lyrics_run / "checkpoints" / "last.ckpt"), api_name="/choose_model"
    )
    assert "lyrics" in inside[0]
    assert (
        "Bach chorales"
        in served_off_loopback.predict(model_path="pretrained:bach_chorales", api_name="/choose_model")[0]
    )
    assert not is_loopback("0.0.0.0") and is_loopback("127.0.0.1") and is_loopback("localhost")


def test_the_page_loads_a_model_once_per_pick(lyrics_run, caplog):
    page = Page(lyrics_run, threads=1)
    ckpt = str(lyrics_run / "checkpoints" / "last.ckpt")
    with caplog.at_level(logging.INFO, logger="lm_music.app"):
        *_, model = page.choose_model(ckpt)
        for seed in (1, 2):
            *_, kept = page.generate(ckpt, prime="Love", length=20, num_samples=1, seed=seed, loaded=model)
            assert kept is model
        *_, other = page.generate("pretrained:bach_chorales", length=8, num_samples=1, loaded=model)
    assert other is not model and other.task.name == "pianoroll"
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded")] == [
        f"loaded {ckpt}",
        "loaded pretrained:bach_chorales",
    ]
