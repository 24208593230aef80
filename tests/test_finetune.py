"""Fine-tuning (`init_from=`): a shipped model's weights trained on on a user's MIDI folder, with a fresh
optimiser; and the one line `ckpt_path=` gives when it cannot resume from what it was given."""

import pytest
import torch

from lm_music.checkpoints import load_checkpoint, network_weights
from lm_music.errors import UserError
from tests.conftest import TINY_MUSIC, data_path, run_script, train_run

NOTTINGHAM = data_path("midi/nottingham_jukedeck")


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    """A user's folder: a few real Nottingham tunes in train/ valid/ test/."""
    folder = tmp_path_factory.mktemp("my_midi")
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        (folder / split).mkdir()
        for file in sorted((NOTTINGHAM / split).glob("*.mid"))[:count]:
            (folder / split / file.name).symlink_to(file)
    return folder


def folder_run(midi_folder, tmp_path, *overrides):
    return [
        "experiment=midi_folder",
        f"data.path={midi_folder}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=4",
        *TINY_MUSIC,
        "logger=csv",
        *overrides,
    ]


def test_init_from_a_shipped_model_trains_its_network_on_a_midi_folder(midi_folder, tmp_path):
    shipped = network_weights(load_checkpoint("pretrained:bach_chorales"))
    # lr 0: the weights stay the shipped ones, so the run shows they were loaded (and that the config's
    # tiny sizes, which would not fit them, were not used); then a real rate moves them.
    still = train_run(
        tmp_path / "still",
        folder_run(
            midi_folder,
            tmp_path,
            "init_from=pretrained:bach_chorales",
            "data.frames_per_beat=1",
            "model.optimizer.lr=0.0",
            "trainer.max_steps=2",
        ),
    )
    last = load_checkpoint(tmp_path / "still" / "checkpoints" / "last.ckpt")
    assert last["hyper_parameters"]["hidden_size"] == 256 and last["hyper_parameters"]["head"] == "nade"
    assert last["hyper_parameters"]["optimizer"]["lr"] == 0.0  # the config's optimiser, not the model's
    for name, weight in network_weights(last).items():
        torch.testing.assert_close(weight, shipped[name], msg=name)
    moved = train_run(
        tmp_path / "moved",
        folder_run(
            midi_folder,
            tmp_path,
            "init_from=pretrained:bach_chorales",
            "data.frames_per_beat=1",
            "model.optimizer.lr=0.001",
            "trainer.max_steps=2",
        ),
    )
    trained = network_weights(load_checkpoint(tmp_path / "moved" / "checkpoints" / "last.ckpt"))
    assert any(not torch.equal(trained[name], shipped[name]) for name in shipped)
    assert moved["global_step"] == still["global_step"] == 2


def test_init_from_a_model_on_another_grid_is_one_line(midi_folder, tmp_path):
    with pytest.raises(
        UserError, match="trained on frames_per_beat=1, fs=None, but the data is set to frames_per"
    ):
        train_run(tmp_path, folder_run(midi_folder, tmp_path, "init_from=pretrained:bach_chorales"))


def test_resuming_from_anything_but_a_ckpt_is_one_line_naming_init_from(tmp_path):
    result = run_script(
        "train.py",
        "experiment=jsb_chorales",
        "ckpt_path=pretrained:jsb_chorales",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ckpt_path=pretrained:jsb_chorales under train=true resumes a run, which needs its .ckpt "
        "(RUN_DIR/checkpoints/last.ckpt); to train on from a shipped or exported model's weights, use "
        "init_from=pretrained:jsb_chorales; to score it, train=false"
    )
