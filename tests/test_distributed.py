import pytest

from tests.conftest import POLYPHONIC, TINY_MUSIC, train_run

JSB = [
    "experiment=jsb_chorales",
    f"data.path={POLYPHONIC / 'JSB_Chorales.mat'}",
    *TINY_MUSIC,
    "data.batch_size=16",
    "callbacks.sample_logger.every_n_epochs=100",
]


def test_two_process_training_splits_batches_and_pools_metrics_across_ranks(tmp_path):
    """trainer=ddp_sim: two CPU processes (gloo). JSB's 229 training pieces make 15 batches of 16: each
    rank runs 8 of them per epoch. The test metric pooled over both ranks equals a one-process evaluation."""
    ddp = train_run(tmp_path / "ddp", [*JSB, "trainer=ddp_sim", "trainer.max_epochs=1"])
    assert ddp["global_step"] == 8
    single = train_run(tmp_path / "single", [*JSB, "train=false", f"ckpt_path={ddp['tested_checkpoint']}"])
    assert ddp["test/nll"] == pytest.approx(single["test/nll"], rel=1e-6)
    assert ddp["test/frame_acc"] == pytest.approx(single["test/frame_acc"], rel=1e-6)
    written = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert written == ["epoch000-step000008.ckpt", "last.ckpt"]  # rank 0 alone writes
