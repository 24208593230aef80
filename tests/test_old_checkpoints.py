"""Checkpoints written before the task folders (commit e8bd4b6: `CharRNN`'s `artist_embedding`, the modules in
`lm_music/modules/`) load, draw, score and resume with today's code. The shipped models, exported then too,
are re-scored exactly by tests/test_pretrained.py.

`fixtures/lyrics_conditional_e8bd4b6.ckpt` was written by that commit's `python train.py
experiment=lyrics_conditional data.path=songdata_head.csv data.max_len=100 data.batch_size=16
model.hidden_size=16 model.embedding_dim=8 model.artist_embedding_dim=4 model.num_layers=1
trainer.max_steps=2`; the values below are what that commit's code drew and scored from it."""

import shutil
from pathlib import Path

import pytest
import torch
from conftest import LYRICS_CSV, train_run

from lm_music.checkpoints import load_checkpoint, module_from_checkpoint, sampler_from_checkpoint

OLD = Path(__file__).parent / "fixtures" / "lyrics_conditional_e8bd4b6.ckpt"
OLD_SAMPLES = ["e'c", ".,Kn'BKoJj,9jaUw [S?w7KU''ITft"]  # seed 0, 30 characters, as ABBA and Ace Of Base
OLD_NLL = 86.17121887207031  # nats of "Hello, love, hello\n" as artist 1


def test_an_old_layout_checkpoint_draws_and_scores_as_it_did():
    checkpoint = load_checkpoint(OLD)
    assert "net.artist_embedding.weight" in checkpoint["state_dict"]  # the old name is really in the file
    sampler = sampler_from_checkpoint(checkpoint)
    assert torch.equal(
        sampler.net.label_embedding.weight, checkpoint["state_dict"]["net.artist_embedding.weight"]
    )
    drawn = sampler.sample(2, 30, artists=sampler.artists[:2], generator=torch.Generator().manual_seed(0))
    assert drawn == OLD_SAMPLES
    module = module_from_checkpoint(checkpoint).eval()
    ids = torch.as_tensor(sampler.vocab.encode("Hello, love, hello\n", bos=True, eos=True)).long()[None]
    batch = {"sequences": ids, "lengths": torch.tensor([ids.shape[1]]), "labels": torch.tensor([1])}
    assert module.sequence_nll(batch)[0].item() == pytest.approx(OLD_NLL, rel=1e-6)


def test_an_old_layout_checkpoint_resumes_training(tmp_path):
    """Lightning's own restore (ckpt_path=) reads the old weight names through the module's
    `on_load_checkpoint`, optimiser state and step count included."""
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(OLD, tmp_path / "checkpoints" / "last.ckpt")
    metrics = train_run(
        tmp_path,
        [
            "experiment=lyrics_conditional",
            "threads=1",
            f"data.path={LYRICS_CSV}",
            "data.max_len=100",
            "data.batch_size=16",
            "model.hidden_size=16",
            "model.embedding_dim=8",
            "model.artist_embedding_dim=4",
            "model.num_layers=1",
            "trainer.max_steps=4",
            "trainer.limit_val_batches=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "test=false",
            "ckpt_path=last",
        ],
    )
    assert metrics["global_step"] == 4  # two steps on from the old checkpoint's two
    resumed = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert "net.label_embedding.weight" in resumed["state_dict"]
    assert "net.artist_embedding.weight" not in resumed["state_dict"]


def test_the_old_layouts_data_settings_are_read_under_todays_names(tmp_path):
    """A shipped lyrics model (exported before the task folders) says `val_fraction`; the evaluator and a
    re-export read it as `valid_fraction`, the key `conf/data/lyrics.yaml` has now."""
    from lm_music.evaluation.sets import run_data_settings
    from lm_music.run_folder import overrides

    shipped = load_checkpoint("pretrained:lyrics")
    assert "val_fraction" in shipped["exported"]["data"]
    data = run_data_settings(shipped)
    assert (
        data["valid_fraction"] == shipped["exported"]["data"]["val_fraction"] and "val_fraction" not in data
    )
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- experiment=lyrics\n- data.val_fraction=0.1\n")
    assert overrides(tmp_path) == ["experiment=lyrics", "data.valid_fraction=0.1"]
