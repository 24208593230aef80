import itertools

import pytest
import torch

from lm_music.nets.heads import NADEHead
from tests.conftest import TINY_MUSIC, data_path, train_run


def _random_head(num_keys: int) -> NADEHead:
    torch.manual_seed(0)
    head = NADEHead(hidden_size=6, num_keys=num_keys, nade_hidden=5)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_()
    return head


def test_nade_distribution_sums_to_one_over_every_frame():
    head = _random_head(num_keys=5)
    frames = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))[None]  # all 32 frames
    h = torch.randn(1, 1, 6).expand(1, 32, 6)
    assert torch.exp(-head.nll(h, frames)).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_nade_nll_equals_the_product_of_conditionals_by_hand():
    head = _random_head(num_keys=3)
    h = torch.randn(1, 1, 6)
    frame = torch.tensor([[[1.0, 0.0, 1.0]]])
    bv, bh = head.to_visible_bias(h)[0, 0], head.to_hidden_bias(h)[0, 0]
    log_p = 0.0
    for k in range(3):
        below = sum((frame[0, 0, j] * head.W[j] for j in range(k)), torch.zeros(5))
        p = torch.sigmoid(bv[k] + torch.sigmoid(bh + below) @ head.V[k])
        log_p += torch.log(p if frame[0, 0, k] == 1 else 1 - p)
    assert head.nll(h, frame).item() == pytest.approx(-log_p.item(), abs=1e-5)


def test_nade_logits_equal_the_per_key_definition_on_real_chords():
    """The per-segment computation gives, key by key, sigmoid(b_h + sum_{j<k} v_j W_j) . V_k + b_v,k."""
    from lm_music.tasks.pianoroll.datamodule import read_benchmark

    head = _random_head(num_keys=88)
    frames = torch.from_numpy(read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))["test"][0]).float()[
        None
    ]
    h = torch.randn(1, frames.shape[1], 6)
    below = torch.cumsum(frames.unsqueeze(-1) * head.W, dim=-2) - frames.unsqueeze(-1) * head.W
    hidden = torch.sigmoid(head.to_hidden_bias(h).unsqueeze(-2) + below)
    expected = head.to_visible_bias(h) + (hidden * head.V).sum(-1)
    assert frames.sum(-1).max() >= 4  # chords, so several segments per frame
    torch.testing.assert_close(head.logits(h, frames), expected, rtol=1e-4, atol=1e-4)


def test_nade_sampling_respects_the_seed():
    head = _random_head(num_keys=88)
    h = torch.randn(16, 6)
    draw = [head.sample(h, 1.0, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
    assert draw[0].shape == (16, 88) and set(draw[0].unique().tolist()) <= {0.0, 1.0}


def test_a_few_steps_of_rnn_nade_on_jsb_lower_the_loss(tmp_path):
    common = ["experiment=jsb_chorales", f"data.path={data_path('polyphonic/JSB_Chorales.mat')}", *TINY_MUSIC]
    common += ["model.head=nade", "trainer.limit_val_batches=2", "test=false"]
    common += ["callbacks.sample_logger.every_n_epochs=1"]
    before = train_run(tmp_path / "before", [*common, "trainer.max_steps=1"])
    after = train_run(tmp_path / "after", [*common, "trainer.max_steps=30"])
    assert after["val/nll"] < 0.6 * before["val/nll"]
    assert 0 <= after["val/frame_acc"] <= 1


def test_transposition_augmentation_shifts_whole_pieces(tmp_path):
    from lm_music.data.batching import pad_collate
    from lm_music.tasks.pianoroll.datamodule import read_benchmark, transpose_rolls

    rolls = read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))["train"][:3]
    batch = pad_collate([(r, -1) for r in rolls])["sequences"]
    shifted = transpose_rolls(batch, [3, -2, 0])
    assert torch.equal(shifted[0, :, 3:], batch[0, :, :-3]) and torch.equal(
        shifted[1, :, :-2], batch[1, :, 2:]
    )
    assert torch.equal(shifted[2], batch[2])
    assert shifted.sum() == batch.sum()  # JSB spans MIDI 43-96: nothing falls off the keyboard
    assert torch.equal(transpose_rolls(shifted, [-3, 2, 0]), batch)
