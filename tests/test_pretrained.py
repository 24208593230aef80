"""The shipped models: sampling with no arguments, the listing, and each benchmark model re-scoring to the
figure on its card (any drift in data reading or metric code fails here)."""

import json

import pretty_midi
import pytest
import scipy.io.wavfile

from lm_music.cards import card_command
from lm_music.checkpoints import PRETRAINED_DIR, pretrained_names
from tests.conftest import POLYPHONIC, ROOT, run_script, train_run


def test_sample_py_with_no_arguments_writes_a_chorale(tmp_path):
    result = run_script(str(ROOT / "sample.py"), "num_samples=2", "length=32", "threads=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for i in range(2):
        midi = tmp_path / "samples" / f"sample_{i:03d}.mid"
        assert len(pretty_midi.PrettyMIDI(str(midi)).instruments[0].notes) > 0
        assert midi.with_suffix(".png").stat().st_size > 1000
        rate, audio = scipy.io.wavfile.read(midi.with_suffix(".wav"))
        assert rate == 22050 and len(audio) > rate


def test_pretrained_list_shows_every_shipped_model_with_its_summary(tmp_path):
    result = run_script(str(ROOT / "sample.py"), "pretrained=list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "samples").exists()
    shown = result.stdout
    assert pretrained_names() == ["bach_chorales", "jsb_chorales", "nottingham", "piano_midi"]
    for name in pretrained_names():
        summary = json.loads((PRETRAINED_DIR / name / "config.json").read_text())["summary"]
        assert f"{name} " in shown and summary in shown


def test_the_shipped_jsb_model_rescores_to_its_card(tmp_path):
    config = json.loads((PRETRAINED_DIR / "jsb_chorales" / "config.json").read_text())
    metrics = train_run(
        tmp_path,
        [
            "experiment=jsb_chorales",
            f"data.path={POLYPHONIC / 'JSB_Chorales.mat'}",
            "train=false",
            "ckpt_path=pretrained:jsb_chorales",
            "threads=1",
            "logger=csv",
        ],
    )
    for key in ("test/nll", "test/nll_all", "test/frame_acc"):
        assert metrics[key] == pytest.approx(config["metrics"][key], abs=1e-3), key
    card = (PRETRAINED_DIR / "jsb_chorales" / "README.md").read_text()
    assert f"| test/nll | {config['metrics']['test/nll']:.4f} |" in card


def test_cards_give_the_command_a_user_types_without_paths_of_the_training_machine():
    overrides = [
        "experiment=jsb_chorales",
        "data.path=/home/me/data/JSB_Chorales.mat",
        "paths.log_dir=/srv/runs",
    ]
    overrides += ["hydra.run.dir=/srv/runs/x", "threads=1"]
    assert (
        card_command(overrides)
        == "python train.py experiment=jsb_chorales data.path=PATH/JSB_Chorales.mat threads=1"
    )
    for name in pretrained_names():
        command = json.loads((PRETRAINED_DIR / name / "config.json").read_text())["training_command"]
        assert f"`{command}`" in (PRETRAINED_DIR / name / "README.md").read_text()
        for word in command.split()[2:]:
            key, _, value = word.partition("=")
            assert not key.startswith(("paths.", "hydra.")), (name, word)
            assert key != "data.path" or value.startswith("PATH/"), (name, word)


# Where each shipped model's data is (the card's data.path=PATH/NAME), by its file name.
DATA_OF = {"JSB_Chorales.mat": POLYPHONIC, "Nottingham.mat": POLYPHONIC, "Piano_midi.mat": POLYPHONIC}


def card_samples_args(name: str, out) -> tuple[list[str], dict]:
    """The card's "Samples" command for shipped model `name`, its data placeholder mapped to the test data."""
    judged = json.loads((PRETRAINED_DIR / name / "config.json").read_text())["samples"]
    args = [
        f"pretrained={name}",
        *(f"{k}={judged[k]}" for k in ("num_samples", "length", "seed")),
        f"out_dir={out}",
    ]
    if judged.get("data"):
        file = judged["data"].removeprefix("PATH/")
        args.append(f"data.path={DATA_OF[file] / file}")
    return args, judged


@pytest.mark.parametrize(
    "name",
    [
        "jsb_chorales",
        pytest.param("nottingham", marks=pytest.mark.slow),
        pytest.param("piano_midi", marks=pytest.mark.slow),
        pytest.param("bach_chorales", marks=pytest.mark.slow),  # music21's chorales are built first
    ],
)
def test_each_cards_samples_section_is_what_its_command_gives(name, tmp_path):
    from lm_music.evaluate import evaluate, options

    args, judged = card_samples_args(name, tmp_path)
    result = evaluate(options([*args, "threads=1"]))
    for anchor in ("model", "ceiling", "floor"):
        assert result["summary"]["mean_oa"][anchor] == pytest.approx(judged["mean_oa"][anchor], abs=1e-6)
    for feature, figures in judged["features"].items():
        assert result["comparisons"]["model"][feature]["mean_samples"] == pytest.approx(
            figures["samples"], abs=1e-6
        )
    card = (PRETRAINED_DIR / name / "README.md").read_text()
    assert f"**{judged['mean_oa']['model']:.3f}**" in card and "## Samples" in card
