import json
import math

import numpy as np
import pretty_midi
import pytest
import scipy.io.wavfile
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lm_music.checkpoints import load_checkpoint, module_from_checkpoint
from lm_music.data.batching import pad_collate
from lm_music.midi import midi_to_roll
from lm_music.nets.rnn import make_rnn
from lm_music.tasks.pianoroll.datamodule import read_benchmark
from lm_music.tasks.pianoroll.lit_module import PianoRollLitModule
from tests.conftest import TINY_MUSIC, data_path, run_script, train_run


@pytest.fixture(scope="module")
def jsb():
    return read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))


def test_nll_follows_the_benchmark_protocol(jsb):
    """sum over pieces of the NLL of frames 2..T, over sum(T_i - 1), in nats per frame, padding ignored."""
    torch.manual_seed(0)
    module = PianoRollLitModule(hidden_size=16, embedding_dim=8).eval()
    rolls = [jsb["test"][0], jsb["test"][5][:7], jsb["test"][9][:1]]  # the last has no frame to score
    batch = pad_collate([(r, -1) for r in rolls])
    with torch.no_grad():
        nll_sum, count, extra = module.loss_terms(batch)
        by_hand, frames = 0.0, 0
        for roll in rolls[:2]:
            x = torch.from_numpy(roll).float()[None]
            h, _ = module(x[:, :-1])
            p = torch.sigmoid(module.net.head.linear(h)).double()
            y = x[:, 1:].double()
            by_hand += -(y * p.log() + (1 - y) * (1 - p).log()).sum().item()
            frames += len(roll) - 1
    assert count.item() == frames == len(rolls[0]) - 1 + 6
    assert nll_sum.item() == pytest.approx(by_hand, rel=1e-5)
    # An untrained model is close to p = 0.5 for every key: 88 ln 2 = 61 nats per frame.
    assert 40 < nll_sum.item() / frames < 80


def test_nll_all_scores_frame_1_from_the_learned_start(jsb):
    """nll_all: frames 1..T over sum(T_i), frame 1 predicted from the learned start; nll: frames 2..T over
    sum(T_i - 1), from the same outputs; the loss is nll_all."""
    torch.manual_seed(0)
    module = PianoRollLitModule(hidden_size=16, embedding_dim=8, learned_start=True).eval()
    rolls = [
        jsb["test"][0],
        jsb["test"][5][:7],
        jsb["test"][9][:1],
    ]  # the last: only frame 1, scored in nll_all
    with torch.no_grad():
        nll_sum, count, extra = module.loss_terms(pad_collate([(r, -1) for r in rolls]))
        per_frame = []
        for roll in rolls:
            x = torch.from_numpy(roll).float()[None]
            h, _ = module(x[:, :-1], start=True)
            assert h.shape[1] == len(roll)
            p = torch.sigmoid(module.net.head.linear(h)).double()
            y = x.double()
            per_frame.append(-(y * p.log() + (1 - y) * (1 - p).log()).sum(-1)[0])
        first = torch.cat([f[:1] for f in per_frame]).sum().item()
        later = torch.cat([f[1:] for f in per_frame]).sum().item()
    assert count.item() == extra["nll_all"][1].item() == sum(len(r) for r in rolls)
    assert extra["nll"][1].item() == sum(len(r) - 1 for r in rolls)
    assert nll_sum.item() == pytest.approx(first + later, rel=1e-5)
    assert extra["nll_all"][0].item() == pytest.approx(first + later, rel=1e-5)
    assert extra["nll"][0].item() == pytest.approx(later, rel=1e-5)
    # Frame 1 is predicted from the start alone: the same distribution for every piece.
    h0, _ = module(torch.zeros(1, 0, 88), start=True)
    assert h0.shape == (1, 1, 16)


def test_frame_accuracy_counts_true_and_false_keys():
    module = PianoRollLitModule(
        hidden_size=4, embedding_dim=4
    ).eval()  # frame accuracy is an evaluation metric
    with torch.no_grad():
        module.net.head.linear.weight.zero_()
        module.net.head.linear.bias.fill_(-5.0)
        module.net.head.linear.bias[39] = 5.0  # always predicts exactly pitch 60
    roll = np.zeros((3, 88), dtype=np.uint8)
    roll[1, [39, 43]] = 1  # frame 2: predicted 60 right, missed 64
    roll[2, 40] = 1  # frame 3: predicted 60 wrongly, missed 61
    _, _, extra = module.loss_terms(pad_collate([(roll, -1)]))
    true_pos, denominator = extra["frame_acc"]
    assert true_pos.item() == 1 and denominator.item() == 4  # TP / (TP + FP + FN) = 1 / (1 + 1 + 2)


def test_jsb_training_learns_and_logs_rolls_and_audio(jsb_run):
    metrics = json.loads((jsb_run / "metrics.json").read_text())
    # Every key at p = 0.5 costs 61 nats per frame; per-key base rates (no model of time) cost 11.1.
    assert metrics["test/nll"] < 20 and metrics["test/nll_all"] < 20
    assert metrics["val/nll_all"] == metrics["val/loss"]  # a learned start (the default): frames 1..T trained
    assert 0 <= metrics["val/frame_acc"] <= 1
    events = EventAccumulator(str(jsb_run / "tensorboard"), size_guidance={"images": 0, "audio": 0}).Reload()
    assert "samples/roll_0" in events.Tags()["images"]
    assert "samples/audio_0" in events.Tags()["audio"]
    assert "val/nll" in events.Tags()["scalars"]


def test_sampling_writes_midi_png_wav_and_is_seeded(jsb_run, tmp_path):
    ckpt = jsb_run / "checkpoints" / "last.ckpt"
    args = ["sample.py", f"ckpt_path={ckpt}", "num_samples=3", "length=48", "audio=true", "seed=3"]
    first = run_script(*args, f"out_dir={tmp_path}/a")
    assert first.returncode == 0, first.stderr
    run_script(*args, f"out_dir={tmp_path}/b")
    for i in range(3):
        mid = tmp_path / "a" / f"sample_{i:03d}.mid"
        assert mid.read_bytes() == (tmp_path / "b" / mid.name).read_bytes()
        assert mid.with_suffix(".png").stat().st_size > 1000
        rate, audio = scipy.io.wavfile.read(mid.with_suffix(".wav"))
        assert rate == 22050 and len(audio) > rate
        assert len(pretty_midi.PrettyMIDI(str(mid)).instruments[0].notes) > 0
    assert "audio rendered with" in first.stderr + first.stdout

    assert "3 samples of 48 frames" in first.stdout  # length=48: all drawn after the learned start
    module = module_from_checkpoint(load_checkpoint(ckpt)).eval()
    rolls = module.sample(3, 48, generator=torch.Generator().manual_seed(3)).numpy()
    assert rolls.shape == (3, 48, 88)
    roll_back, _ = midi_to_roll(str(tmp_path / "a" / "sample_000.mid"), frames_per_beat=1)
    np.testing.assert_array_equal(roll_back, rolls[0][: len(roll_back)])
    assert not rolls[0][len(roll_back) :].any()  # only trailing silence is trimmed


def test_prime_midi_is_continued(jsb_run, tmp_path):
    prime = data_path("midi/nottingham_jukedeck/train/jigs318.mid")
    module = module_from_checkpoint(load_checkpoint(jsb_run / "checkpoints" / "last.ckpt")).eval()
    roll, _ = midi_to_roll(str(prime), frames_per_beat=1)
    out = module.sample(2, 10, prime=torch.from_numpy(roll[:8]), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 18, 88)
    np.testing.assert_array_equal(out[0, :8].numpy(), roll[:8])


def test_truncated_backprop_steps_once_per_chunk(tmp_path):
    metrics = train_run(
        tmp_path,
        [
            "experiment=piano_midi",
            f"data.path={data_path('polyphonic/Piano_midi.mat')}",
            *TINY_MUSIC,
            "model.tbptt_steps=100",
            "data.batch_size=8",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.max_epochs=1",
        ],
    )
    # Two batches of Piano-midi.de pieces (hundreds to thousands of frames) give many 100-frame chunks,
    # and each chunk is one optimiser step.
    assert metrics["global_step"] > 10
    assert math.isfinite(metrics["test/nll"])


@pytest.mark.parametrize(("learned_start", "rows"), [(False, [3, 3, 1, 1, 1]), (True, [3, 3, 2, 1, 1])])
def test_truncated_backprop_drops_ended_pieces_from_later_chunks(jsb, learned_start, rows):
    """Chunks run only the pieces still going (no padding computed) and train exactly as the padded batch."""
    import copy

    import pytorch_lightning as pl

    torch.manual_seed(0)
    module = PianoRollLitModule(hidden_size=16, embedding_dim=8, tbptt_steps=16, learned_start=learned_start)
    reference = copy.deepcopy(module)
    # 19, 69 and 32 target frames (20, 70 and 33 after a learned start: the third reaches the chunk at 32)
    rolls = [jsb["train"][0][:20], jsb["train"][4][:70], jsb["train"][2][:33]]
    batch = pad_collate([(r, -1) for r in rolls])

    rows_seen = []
    module.net.rnn.register_forward_hook(lambda _m, args, _out: rows_seen.append(args[0].shape[0]))
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0
    )
    trainer.fit(module, train_dataloaders=loader)
    assert rows_seen == rows  # chunks starting at 0, 16, 32, 48, 64

    # The old way: every chunk runs the whole padded batch, the ended rows masked out of the loss.
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    inputs, targets, scored, scored_all = reference._split(batch)
    if learned_start:  # the start's output predicts frame 1: the inputs run one position behind the targets
        inputs = torch.cat([torch.zeros_like(inputs[:, :1]), inputs], dim=1)
    state = None
    for begin in range(0, targets.shape[1], 16):
        chunk = slice(begin, begin + 16)
        first = learned_start and begin == 0
        nll_sum, count, _, state = reference._terms(
            inputs[:, 1:16] if first else inputs[:, chunk],
            targets[:, chunk],
            scored[:, chunk],
            scored_all[:, chunk],
            state,
            start=first,
            with_accuracy=False,
        )
        optimizer.zero_grad()
        (nll_sum / count).backward()
        optimizer.step()
        state = tuple(s.detach() for s in state)
    for trained, expected in zip(module.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(trained, expected, rtol=1e-4, atol=1e-6)


def test_weight_dropout_masks_recurrent_weights_in_training_only():
    torch.manual_seed(0)
    rnn = make_rnn("lstm", 8, 16, 2, dropout=0.0, weight_dropout=0.5)
    x = torch.randn(3, 20, 8)
    rnn.train()
    first, second = rnn(x)[0], rnn(x)[0]
    assert not torch.equal(first, second)  # a fresh mask each forward pass
    first.sum().backward()
    assert rnn.weight_hh_l0.grad.abs().sum() > 0  # the masked weights still learn
    rnn.eval()
    assert torch.equal(rnn(x)[0], rnn(x)[0])
    rnn.weight_dropout = 0.0
    plain = rnn(x)[0]
    rnn.train()
    torch.testing.assert_close(rnn(x)[0], plain)  # the real weights are back after each masked pass


def test_training_without_validation_or_test_finishes(tmp_path, caplog):
    """trainer.limit_val_batches=0 test=false trains and writes metrics.json; only a sweep needs val/loss."""
    metrics = train_run(
        tmp_path,
        [
            "experiment=jsb_chorales",
            f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
            *TINY_MUSIC,
            "trainer.max_steps=35",  # past the end of the first epoch (29 batches), where the plateau schedule steps
            "trainer.limit_val_batches=0",
            "test=false",
        ],
    )
    assert metrics["global_step"] == 35 and not any("/" in k for k in metrics)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert "optimized_metric='val/loss' is not a metric of this run" in caplog.text


@pytest.mark.parametrize(
    "overrides",
    [
        [  # its default is the Transformer; TINY_MUSIC sizes the LSTM
            "experiment=nottingham",
            "model=pianoroll_rnn",
            f"data.path={data_path('polyphonic/bl_pickles/Nottingham.pickle')}",
        ],
        [
            "experiment=musedata",
            f"data.path={data_path('polyphonic/bl_pickles/jsb-chorales-quarter-original.pkl')}",
        ],
        ["experiment=midi_folder", f"data.path={data_path('midi/nottingham_jukedeck')}"],
    ],
    ids=["nottingham", "musedata", "midi_folder"],
)
def test_each_music_experiment_trains(tmp_path, overrides):
    metrics = train_run(
        tmp_path,
        [
            *overrides,
            *TINY_MUSIC,
            f"paths.data_dir={tmp_path}",
            "trainer.max_steps=3",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
        ],
    )
    assert metrics["global_step"] == 3 and math.isfinite(metrics["val/nll"])


@pytest.mark.slow
def test_default_train_command_trains_on_bach_chorales(tmp_path, chorale_cache):
    """`python train.py` with no experiment= argument trains experiment=bach_chorales: music21's chorales, built
    once and cached."""
    result = run_script(
        "train.py",
        *TINY_MUSIC,
        f"paths.data_dir={chorale_cache}",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/nll"] < 61 and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((chorale_cache / "cache").glob("*.npz"))
    hparams = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert hparams["head"] == "nade" and hparams["weight_dropout"] == 0.8  # bach_chorales's settings


def test_missing_benchmark_without_urls_says_where_to_get_it(tmp_path):
    result = run_script(
        "train.py",
        "experiment=nottingham",
        f"data.path={tmp_path}/Nottingham.mat",
        "data.urls=[]",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "not found" in result.stderr and "data.path" in result.stderr


@pytest.mark.slow
def test_resuming_with_ckpt_path_last_reaches_the_uninterrupted_weights(tmp_path):
    common = [
        "experiment=jsb_chorales",
        f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
        *TINY_MUSIC,
        "callbacks.sample_logger.every_n_epochs=100",
        "data.batch_size=16",
        "test=false",
        "seed=7",
    ]
    train_run(tmp_path / "whole", [*common, "trainer.max_epochs=2"])
    train_run(tmp_path / "parts", [*common, "trainer.max_epochs=1"])
    resumed = train_run(tmp_path / "parts", [*common, "trainer.max_epochs=2", "ckpt_path=last"])
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    parts = load_checkpoint(tmp_path / "parts" / "checkpoints" / "last.ckpt")
    assert whole["global_step"] == parts["global_step"] == resumed["global_step"] == 30
    for name, tensor in whole["state_dict"].items():
        assert torch.equal(tensor, parts["state_dict"][name]), name
    # The resumed run continued the same TensorBoard folder.
    assert len(list((tmp_path / "parts" / "tensorboard").glob("events.out.tfevents.*"))) >= 2
