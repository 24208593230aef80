import subprocess
import sys
import textwrap

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY_MUSIC, data_path, train_run

JSB = [
    "experiment=jsb_chorales",
    f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
    *TINY_MUSIC,
    "data.batch_size=16",
    "callbacks.sample_logger.every_n_epochs=100",
]


@pytest.mark.slow
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


def test_a_rank_destroys_its_process_group_before_it_exits(tmp_path):
    """A gloo group left alive at exit aborted one rank in ~1 of 8 finished ddp_spawn runs (SIGABRT,
    "terminate called without an active exception"). Exit handlers run last-registered first, so the
    handler registered before the callback's sees the group already destroyed."""
    script = textwrap.dedent(
        f"""
        import atexit
        import torch.distributed as dist
        from lm_music.callbacks import DestroyProcessGroupAtExit

        dist.init_process_group("gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1)
        atexit.register(lambda: print("alive at exit:", dist.is_initialized()))
        DestroyProcessGroupAtExit().setup(None, None, "fit")
        DestroyProcessGroupAtExit().setup(None, None, "validate")  # a second run in the same process
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "alive at exit: False"
