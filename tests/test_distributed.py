import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
    rank runs 8 of them per epoch. The validation NLL the two ranks pooled at the end of the epoch equals
    a one-process evaluation of the checkpoint written then."""
    ddp = train_run(tmp_path / "ddp", [*JSB, "trainer=ddp_sim", "trainer.max_epochs=1"])
    assert ddp["global_step"] == 8
    written = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert written == ["epoch000-step000008.ckpt", "last.ckpt"]  # rank 0 alone writes
    events = EventAccumulator(str(tmp_path / "ddp" / "tensorboard")).Reload()
    pooled_by_ranks = events.Scalars("val/nll")[0].value  # logged during the two-process fit
    single = train_run(tmp_path / "single", [*JSB, "train=false", f"ckpt_path={ddp['tested_checkpoint']}"])
    reference = train_run(
        tmp_path / "val", [*JSB, "train=false", "test=true", f"ckpt_path={ddp['tested_checkpoint']}"]
    )
    assert ddp["test/nll"] == pytest.approx(single["test/nll"], rel=1e-6) == reference["test/nll"]
    assert pooled_by_ranks == pytest.approx(ddp["val/nll"], rel=1e-5)
