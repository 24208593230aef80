import json
import shutil

import pytest

from lm_music.checkpoints import load_checkpoint, pretrained_names
from lm_music.errors import UserError
from lm_music.export import export, rejudge
from tests.conftest import TINY_MUSIC, data_path, run_script, sample_run, train_run

JSB_FILE = data_path("polyphonic/JSB_Chorales.mat")
JSB = ["experiment=jsb_chorales", f"data.path={JSB_FILE}", *TINY_MUSIC]


@pytest.fixture(scope="module")
def exported(jsb_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "my-jsb-model"
    result = run_script(
        "-m", "lm_music.export", f"ckpt_path={jsb_run / 'checkpoints' / 'last.ckpt'}", f"out_dir={out}"
    )
    assert result.returncode == 0, result.stderr
    return out


def test_export_writes_the_hub_layout(exported):
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((exported / "config.json").read_text())
    assert config["task"] == "pianoroll" and config["hyper_parameters"]["head"] == "nade"
    assert config["hyper_parameters"]["frames_per_beat"] == 1 and config["hyper_parameters"]["learned_start"]
    card = (exported / "README.md").read_text()
    front = card.split("---")[1]
    assert "license:" in front and "tags:" in front and "library_name: lm_music" in front
    assert f"{config['parameters']:,}" in card and "ckpt_path=PATH/TO/my-jsb-model" in card


def test_an_exported_model_samples_and_scores_as_its_checkpoint(jsb_run, exported, tmp_path):
    ckpt = jsb_run / "checkpoints" / "last.ckpt"
    for name, source in (("ckpt", ckpt), ("folder", exported)):
        sample_run(
            [f"ckpt_path={source}", "num_samples=2", "length=40", "seed=5", f"out_dir={tmp_path / name}"]
        )
    for i in range(2):
        midi = f"sample_{i:03d}.mid"
        assert (tmp_path / "ckpt" / midi).read_bytes() == (tmp_path / "folder" / midi).read_bytes()
    ckpt_scores = train_run(tmp_path / "score_ckpt", [*JSB, "train=false", f"ckpt_path={ckpt}"])
    folder_scores = train_run(tmp_path / "score_folder", [*JSB, "train=false", f"ckpt_path={exported}"])
    for key in ("test/nll", "test/nll_all", "test/frame_acc"):
        assert folder_scores[key] == ckpt_scores[key], key


def test_bad_exported_folders_and_names_are_one_line(exported, tmp_path):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(exported / "config.json", no_weights)
    mismatched = tmp_path / "mismatched"
    shutil.copytree(exported, mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    config["hyper_parameters"]["hidden_size"] = 64  # the weights are of a 32-unit LSTM
    (mismatched / "config.json").write_text(json.dumps(config))
    cases = [
        (f"ckpt_path={no_weights}", "needs model.safetensors and config.json"),
        (f"ckpt_path={mismatched}", "the weights do not match the model its config describes"),
    ]
    for arg, message in cases:
        with pytest.raises(UserError, match=message):
            sample_run([arg, f"out_dir={tmp_path / 'out'}"])
    result = run_script("sample.py", "pretrained=no_such_model", f"out_dir={tmp_path / 'out'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().endswith(
        f"error: no pretrained model 'no_such_model'; shipped: {', '.join(pretrained_names())}"
    )
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="already an exported model"):
        export(exported, tmp_path / "again")
    assert load_checkpoint(exported)["lm_music_task"] == "pianoroll"


def test_decoding_defaults_on_a_folder_are_what_sampling_and_its_card_use(exported, tmp_path):
    """export card=... decoding.temperature=T: config.json keeps T, sample.py without temperature= draws as
    with temperature=T (and not as at 1.0), and the card's samples are judged and said to be at T."""
    folder = tmp_path / "decoded"
    shutil.copytree(exported, folder)
    rejudge(folder, {"path": str(JSB_FILE)}, {"temperature": 0.5})
    config = json.loads((folder / "config.json").read_text())
    assert config["decoding"] == {"temperature": 0.5} and config["samples"]["temperature"] == 0.5
    card = (folder / "README.md").read_text()
    assert "64 samples of 256 at temperature 0.5 (the model's decoding defaults" in card
    assert "Decoding defaults (`config.json` `decoding`): temperature 0.5;" in card
    drawn = {}
    for name, extra in (("default", []), ("explicit", ["temperature=0.5"]), ("one", ["temperature=1.0"])):
        out = tmp_path / name
        sample_run([f"ckpt_path={folder}", "num_samples=2", "length=40", "seed=5", f"out_dir={out}", *extra])
        drawn[name] = [(out / f"sample_{i:03d}.mid").read_bytes() for i in range(2)]
    assert drawn["default"] == drawn["explicit"] != drawn["one"]
    bad = (
        ({"temperature": 0}, "temperature > 0"),
        ({"top_k": 3}, "not top_k"),
        ({"cache_lambda": 1.5}, "cache_lambda must be in"),
        ({"refrain_start": 1.0}, "refrain_start must be in"),
        ({"rhyme_candidates": 0}, "rhyme_candidates must be a whole number >= 1"),
    )
    for decoding, message in bad:
        with pytest.raises(UserError, match=message):
            rejudge(folder, {"path": str(JSB_FILE)}, decoding)
    assert json.loads((folder / "config.json").read_text())["decoding"] == {"temperature": 0.5}


@pytest.mark.slow  # a training process, then a scoring one (~20 s)
def test_score_true_puts_test_metrics_and_the_judged_samples_on_the_card(tmp_path):
    """export score=true: the card's test metrics come from the exported weights, and its "Samples" section
    is what `python -m lm_music.evaluate` gives with the command the card shows (the data split, not the
    data's path, travels in config.json)."""
    from lm_music.evaluate import evaluate, options

    run = tmp_path / "run"  # a run folder as train.py writes it: score=true reads its .hydra/
    trained = run_script("train.py", *JSB, "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr
    folder = tmp_path / "scored"
    export(run / "checkpoints" / "last.ckpt", folder, score=True)
    config = json.loads((folder / "config.json").read_text())
    assert "path" not in config["data"] and config["data"]["source"] == "benchmark"
    judged, card = config["samples"], (folder / "README.md").read_text()
    assert config["metrics"]["measured_on"] == "these float32 weights" and "test/nll" in config["metrics"]
    command = f"num_samples=64 length=256 seed=0 data.path=PATH/{JSB_FILE.name}"
    assert "## Samples" in card and command in card and f"**{judged['mean_oa']['model']:.3f}**" in card
    again = evaluate(
        options(
            [
                f"ckpt_path={folder}",
                *command.replace("PATH", str(JSB_FILE.parent)).split(),
                f"out_dir={tmp_path}",
            ]
        )
    )
    assert again["summary"]["mean_oa"]["model"] == pytest.approx(judged["mean_oa"]["model"], abs=1e-9)
    assert judged["mean_oa"]["floor"] < judged["mean_oa"]["ceiling"]
    assert set(judged["features"]) == set(again["comparisons"]["model"])
