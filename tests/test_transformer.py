"""The Transformer family: causal, its cache gives what recomputing gives, it trains on real data, and it samples
through the same sample.py as the RNNs."""

import csv

import pytest
import torch

from lm_music.decoding import generate
from lm_music.errors import UserError
from lm_music.nets.roll import PianoRollTransformer
from lm_music.nets.token import TokenTransformer
from tests.conftest import TINY_LYRICS, data_path, run_script, train_run

SIZES = {"d_model": 32, "n_layer": 2, "n_head": 4, "context": 16, "dropout": 0.0}


def char_model() -> TokenTransformer:
    torch.manual_seed(0)
    return TokenTransformer(vocab_size=20, num_labels=3, **SIZES).eval()


def roll_model(head: str) -> PianoRollTransformer:
    torch.manual_seed(0)
    model = PianoRollTransformer(head=head, nade_hidden=8, **SIZES).eval()
    for p in model.head.parameters():  # a trained head's scale: the untrained NADE weights are ~0.01
        torch.nn.init.normal_(p, std=0.5)
    return model


def rolls(batch: int, length: int) -> torch.Tensor:
    return (torch.rand(batch, length, 88, generator=torch.Generator().manual_seed(1)) < 0.05).float()


@pytest.mark.parametrize("length", [12, 40])  # within the context, and chunks past it
def test_changing_a_later_position_leaves_earlier_outputs_unchanged(length):
    ids = torch.randint(20, (2, length), generator=torch.Generator().manual_seed(0))
    artists = torch.tensor([0, 2])
    model = char_model()
    changed = ids.clone()
    changed[:, length - 5] = (changed[:, length - 5] + 1) % 20
    with torch.no_grad():
        before, _ = model(ids, artists)
        after, _ = model(changed, artists)
    assert torch.equal(before[:, : length - 5], after[:, : length - 5])
    assert not torch.allclose(before[:, length - 5 :], after[:, length - 5 :])

    frames = rolls(2, length)
    net = roll_model("nade")
    changed = frames.clone()
    changed[:, length - 5] = 1 - changed[:, length - 5]
    with torch.no_grad():
        assert torch.equal(net(frames)[0][:, : length - 5], net(changed)[0][:, : length - 5])


@pytest.mark.parametrize("length", [14, 70])  # within the context, and past it (chunks of context / 2)
def test_cached_steps_give_the_distribution_of_the_recomputed_prefix(length):
    """Lyrics: logits read with the cache (a chunk, then several positions, then one position at a time) are
    those of one forward pass over the whole sequence, the scoring path: what is sampled is what is scored."""
    model = char_model()
    ids = torch.randint(20, (3, length), generator=torch.Generator().manual_seed(2))
    artists = torch.tensor([0, 1, 2])
    with torch.no_grad():
        full, _ = model(ids, artists)
        logits, state = model(ids[:, :4], artists)
        stepped = [logits]
        logits, state = model(ids[:, 4:9], artists, state)  # several new positions beside a cache
        stepped.append(logits)
        for t in range(9, length):
            logits, state = model(ids[:, t : t + 1], artists, state)
            stepped.append(logits)
    torch.testing.assert_close(torch.cat(stepped, 1), full, atol=1e-5, rtol=1e-5)
    assert state.length < SIZES["context"]


@pytest.mark.parametrize("head", ["bernoulli", "nade"])
def test_cached_sampling_draws_what_recomputing_draws(head):
    """Music, past the context too: generate() with the cache draws the frames that scoring the whole history
    again at each step (one forward pass, as the test step reads a piece) draws, seed for seed."""
    net = roll_model(head)
    prime = rolls(2, 5)

    def recompute(frames, state):  # no cache: the whole history again at each step
        history = frames if state is None else torch.cat([state, frames], 1)
        features, _ = net(history)
        return features, history

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return lambda h: net.head.sample(h, 1.0, generator)

    cached = generate(net, prime, 40, draw(7))
    recomputed = generate(recompute, prime, 40, draw(7))
    assert cached.sum() > 0
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"d_model": 30, "n_head": 4}, "model.d_model must be divisible by model.n_head"),
        ({"context": 1}, "model.context must be at least 2"),
        ({"d_model": 12, "n_head": 4}, "even head size"),
    ],
)
def test_bad_sizes_are_one_clear_error(sizes, message):
    with pytest.raises(UserError, match=message):
        TokenTransformer(vocab_size=10, **{**SIZES, **sizes})


TINY_TRANSFORMER = ["model.d_model=32", "model.n_layer=2", "model.n_head=2", "model.context=32"]


def test_music_transformer_trains_on_jsb_and_samples_through_sample_py(tmp_path):
    """A few epochs on the real JSB Chorales lower the validation NLL; the checkpoint samples MIDI and PNG
    through sample.py, the same seed giving the same files."""
    metrics = train_run(
        tmp_path / "run",
        [
            "experiment=jsb_chorales_transformer",
            f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
            "threads=1",
            "logger=csv",
            *TINY_TRANSFORMER,
            "model.nade_hidden=16",
            "model.optimizer.lr=0.003",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=12",
            "trainer.enable_progress_bar=false",
            "callbacks.sample_logger.num_samples=2",
            "callbacks.sample_logger.length=16",
        ],
    )
    rows = csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines())
    val = [float(row["val/nll"]) for row in rows if row.get("val/nll")]
    assert len(val) >= 3 and val[2] < val[0]  # three epochs (then the best checkpoint's, validated again)
    assert metrics["test/nll"] < 20

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    args = ["sample.py", f"ckpt_path={ckpt}", "num_samples=2", "length=40", "seed=4"]
    one = run_script(*args, f"out_dir={tmp_path}/a")
    two = run_script(*args, f"out_dir={tmp_path}/b")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    for name in ("sample_000.mid", "sample_001.mid", "sample_000.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_conditional_lyrics_transformer_trains_and_samples_through_sample_py(tmp_path):
    """experiment=lyrics_conditional with model=char_transformer: trains on the real lyrics, then sample.py
    writes text after the prime, the same seed giving the same text."""
    metrics = train_run(
        tmp_path / "run",
        [
            "experiment=lyrics_conditional",
            "model=char_transformer",
            "model.conditional=true",
            *[o for o in TINY_LYRICS if not o.startswith("model.")],
            *TINY_TRANSFORMER,
            "model.optimizer.lr=0.003",
            "trainer.max_steps=24",
            "trainer.val_check_interval=12",
            "trainer.limit_val_batches=3",
        ],
    )
    assert metrics["test/bpc"] < 5
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    args = ["sample.py", f"ckpt_path={ckpt}", "num_samples=2", "length=60", "seed=5", "prime=Love"]
    one = run_script(*args, "artist=ABBA", f"out_dir={tmp_path}/a")
    two = run_script(*args, "artist=ABBA", f"out_dir={tmp_path}/b")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    text = (tmp_path / "a" / "samples.txt").read_text()
    assert text == (tmp_path / "b" / "samples.txt").read_text()
    samples = [block.split("\n", 1)[1] for block in text.split("=== sample ")[1:]]
    assert len(samples) == 2 and all(sample.startswith("Love") for sample in samples)
    # Its output weights are tied to the embedding: the exported folder (safetensors) writes the same text.
    from lm_music.export import export

    export(ckpt, tmp_path / "exported")
    folder = run_script(
        "sample.py", f"ckpt_path={tmp_path / 'exported'}", *args[2:], "artist=ABBA", f"out_dir={tmp_path}/d"
    )
    assert folder.returncode == 0, folder.stderr
    assert (tmp_path / "d" / "samples.txt").read_text() == text
