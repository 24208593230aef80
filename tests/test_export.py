import json
import shutil

import pytest

from lm_music.checkpoints import load_checkpoint, pretrained_names
from lm_music.errors import UserError
from lm_music.export import export
from tests.conftest import POLYPHONIC, TINY_MUSIC, run_script, sample_run, train_run

JSB = ["experiment=jsb_chorales", f"data.path={POLYPHONIC / 'JSB_Chorales.mat'}", *TINY_MUSIC]


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
