import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lm_music.checkpoints import load_checkpoint, module_from_checkpoint
from lm_music.tasks.lyrics.datamodule import LyricsDataModule
from lm_music.tasks.lyrics.sampler import whole_words
from tests.conftest import TINY_LYRICS, compose_train, data_path, run_script, train_run


def test_training_learns_and_writes_its_run_dir(lyrics_run):
    metrics = json.loads((lyrics_run / "metrics.json").read_text())
    checkpoint = load_checkpoint(lyrics_run / "checkpoints" / "last.ckpt")
    vocab_size = len(checkpoint["hyper_parameters"]["vocab"]) + 4
    # A uniform guess costs ln(V) nats per character; 60 steps on real lyrics must do much better.
    assert metrics["val/loss"] < 0.8 * math.log(vocab_size)
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))
    assert metrics["test/bpc"] < 0.8 * math.log2(vocab_size)
    assert metrics["global_step"] == 60
    assert (lyrics_run / "checkpoints" / "last.ckpt").is_file()
    assert metrics["best_checkpoint"].startswith(str(lyrics_run / "checkpoints"))
    assert checkpoint["hyper_parameters"]["artists"][0] == "ABBA"

    events = EventAccumulator(str(lyrics_run / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    assert "train/loss" in events.Tags()["scalars"] and "val/bpc" in events.Tags()["scalars"]
    text_tags = [t for t in events.Tags()["tensors"] if t.startswith("samples/")]
    assert any("ABBA" in t for t in text_tags)


def test_sampling_is_batched_seeded_and_conditional(lyrics_run):
    module = module_from_checkpoint(load_checkpoint(lyrics_run / "checkpoints" / "last.ckpt")).eval()

    def draw(seed, **kwargs):
        generator = torch.Generator().manual_seed(seed)
        return module.sample(3, 80, temperature=0.8, prime="Love", generator=generator, **kwargs)

    first = draw(0, artists=["ABBA"] * 3)
    assert first == draw(0, artists=["ABBA"] * 3)
    assert first != draw(1, artists=["ABBA"] * 3)
    assert all(t.startswith("Love") and len(t) <= 84 for t in first)
    assert len(set(first)) == 3  # one batch, three different samples


def test_sample_script_writes_samples(lyrics_run, tmp_path):
    args = [f"ckpt_path={lyrics_run}/checkpoints/last.ckpt", "num_samples=2", "length=60", "prime=Why"]
    one = run_script("sample.py", *args, "artist=ABBA", "seed=5", f"out_dir={tmp_path}/a")
    two = run_script("sample.py", *args, "artist=ABBA", "seed=5", f"out_dir={tmp_path}/b")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    text = (tmp_path / "a" / "samples.txt").read_text()
    assert text == (tmp_path / "b" / "samples.txt").read_text()
    assert text.count("=== sample") == 2 and "(ABBA)" in text and "\nWhy" in text
    assert "=== sample 0 (ABBA) ===" in one.stdout

    # sample.py loads only the sampler; the Lightning module draws the same text through it, which sample.py
    # cuts back to its last whole word where the length limit stopped it mid-word
    module = module_from_checkpoint(load_checkpoint(lyrics_run / "checkpoints" / "last.ckpt")).eval()
    texts = module.sample(
        2, 60, prime="Why", artists=["ABBA"] * 2, generator=torch.Generator().manual_seed(5)
    )
    blocks = [block.split("===\n", 1)[1] for block in text.split("=== sample ")[1:]]  # TextSamples.__str__
    shown = [b.removesuffix("\n\n") for b in blocks[:-1]] + [blocks[-1].removesuffix("\n")]
    for raw, cut in zip(texts, shown):
        assert raw.startswith(cut) and (cut == raw or raw[len(cut)] in " \n"), (raw, cut)
    assert whole_words("Why me tender, love me tru", 3, 23) == "Why me tender, love me"
    assert whole_words("Why me\n", 3, 4) == "Why me\n"  # ended by the model: as it is


def test_sampling_imports_neither_lightning_nor_the_data_side():
    """What keeps `sample.py` quick to start (bench/startup.py): the sampling path stays out of them."""
    heavy = ("pytorch_lightning", "torchmetrics", "pandas", "matplotlib", "scipy", "music21")
    code = f"import sys, lm_music.generation; print([m for m in {heavy!r} if m in sys.modules])"
    result = run_script("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_evaluating_a_checkpoint_reproduces_its_test_metrics(lyrics_run, tmp_path):
    trained = json.loads((lyrics_run / "metrics.json").read_text())
    evaluated = train_run(
        tmp_path,
        [
            "experiment=lyrics_conditional",
            *TINY_LYRICS,
            "train=false",
            f"ckpt_path={trained['best_checkpoint']}",
        ],
    )
    assert evaluated["test/bpc"] == pytest.approx(trained["test/bpc"], rel=1e-6)
    assert "val/loss" not in evaluated


def test_resuming_continues_from_the_checkpoint(lyrics_run, tmp_path):
    resumed = train_run(
        tmp_path,
        [
            "experiment=lyrics_conditional",
            *TINY_LYRICS,
            "trainer.max_steps=70",
            "trainer.limit_val_batches=1",
            "test=false",
            f"ckpt_path={lyrics_run}/checkpoints/last.ckpt",
        ],
    )
    assert resumed["global_step"] == 70


def test_unconditional_gru_trains(tmp_path):
    metrics = train_run(
        tmp_path, ["experiment=lyrics", *TINY_LYRICS, "model.cell=gru", "trainer.max_steps=5", "test=false"]
    )
    assert metrics["global_step"] == 5 and math.isfinite(metrics["val/loss"])
    module = module_from_checkpoint(load_checkpoint(tmp_path / "checkpoints" / "last.ckpt"))
    assert not module.conditional and isinstance(module.net.rnn, torch.nn.GRU)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["temperature=0"], "temperature must be > 0"),
        (["artist=Nobody"], "unknown artist 'Nobody'; this model knows 24: ABBA"),
        (["length=0"], "length must be at least 1"),
        (["cache_lambda=1.5"], "cache_lambda must be in [0, 1) (0: no cache), got 1.5"),
        (["refrain_start=0.1", "refrain_boost=-2"], "refrain_boost must be >= 0, got -2.0"),
    ],
)
def test_sample_script_bad_input_is_one_line(lyrics_run, tmp_path, args, message):
    result = run_script(
        "sample.py", f"ckpt_path={lyrics_run}/checkpoints/last.ckpt", f"out_dir={tmp_path}", *args
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "samples.txt").exists()


def test_train_script_bad_input_is_one_line(tmp_path):
    missing = run_script(
        "train.py", "experiment=lyrics", f"data.path={tmp_path}/songdata.csv", f"hydra.run.dir={tmp_path}"
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "lyrics CSV not found" in missing.stderr and "kaggle" in missing.stderr


def test_train_script_names_the_columns_of_a_csv_without_the_text_column(tmp_path):
    beatles = data_path("lyrics/beatles.csv")
    column = run_script("train.py", "experiment=lyrics", f"data.path={beatles}", f"hydra.run.dir={tmp_path}")
    assert "no text column 'text'" in column.stderr and "'lyrics'" in column.stderr


def test_artist_scores_follow_the_artist_embedding(lyrics_run):
    """`artist_nll` scores each song under each artist: its true-artist column is the song's own NLL, and
    swapping two artists' embeddings swaps their columns (`bench/artists.py` identifies artists by it)."""
    checkpoint = load_checkpoint(lyrics_run / "checkpoints" / "last.ckpt")
    module = module_from_checkpoint(checkpoint).eval()
    cfg = compose_train(lyrics_run, ["experiment=lyrics_conditional", *TINY_LYRICS])
    datamodule = LyricsDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    datamodule.adopt(module.hparams)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))

    scores = module.artist_nll(batch)
    assert scores.shape == (len(batch["labels"]), 24)
    own = scores.gather(1, batch["labels"][:, None].long())[:, 0]
    assert torch.allclose(own, module.sequence_nll(batch)[0])
    assert (scores.std(dim=1) > 1e-3).all()  # the artist changes the score of every song

    with torch.no_grad():
        module.net.label_embedding.weight[[0, 1]] = module.net.label_embedding.weight[[1, 0]].clone()
    swapped = module.artist_nll(batch)
    order = [1, 0, *range(2, 24)]
    assert torch.allclose(swapped[:, order], scores, rtol=1e-5)
