"""The LightningModule bases of the tasks: losses, metrics named `stage/name`, optimisers, one shared step for
train/val/test, and the checkpoint's task and random state. Each task's `lit_module.py` builds on one."""

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from lm_music.cache import ContinuousCache, Refrain
from lm_music.errors import UserError
from lm_music.nets.legacy import upgrade_weights
from lm_music.tasks.sampler import NetworkSampler, TokenSampler

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class SequenceLitModule(pl.LightningModule):
    """What every task's module shares: pooled metrics, the shared step, optimisers, the checkpoint's extras.

    A subclass implements `loss_terms(batch) -> (nll_sum, count, extra)`: the summed negative log-likelihood
    of the batch, the number of scored positions it is divided by, and extra pooled metrics as
    `{name: (numerator, denominator)}`. Validation and test metrics are pooled over the whole split
    (sum of NLL / sum of counts, reduced across ranks), not averaged over batches.
    """

    sampler_class: type[NetworkSampler]  # the task's sampler, which builds the network (`self.sampler`)
    metric_names: tuple[str, ...] = ("loss",)

    def __init__(
        self,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        self.gradient_clip_val = gradient_clip_val
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3})
        self.scheduler_cfg = dict(scheduler) if scheduler else None
        if self.optimizer_cfg.get("name", "adam") not in OPTIMIZERS:
            raise UserError(
                f"model.optimizer.name must be one of {sorted(OPTIMIZERS)}, got {self.optimizer_cfg}"
            )
        self.pooled = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric().set_dtype(torch.float64)
                for stage in ("val", "test")
                for name in self.metric_names
            }
        )

    def loss_terms(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        raise NotImplementedError

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        nll_sum, count, extra = self.loss_terms(batch)
        loss = nll_sum / count.clamp(min=1)
        batch_size = batch["lengths"].numel()
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
            return loss
        terms = {"loss": (nll_sum, count), **extra}
        for name, (numerator, denominator) in terms.items():
            metric = self.pooled[f"{stage}_{name}"]
            metric.update(numerator.double() / denominator.clamp(min=1), denominator.double())
            self.log(f"{stage}/{name}", metric, prog_bar=name == "loss", batch_size=batch_size)
        return loss

    def _reset_pooled(self, stage: str) -> None:
        # A module that comes back from ddp_spawn children can carry metric state it never sums again.
        for name, metric in self.pooled.items():
            if name.startswith(f"{stage}_"):
                metric.reset()

    def on_validation_epoch_start(self) -> None:
        self._reset_pooled("val")

    def on_test_epoch_start(self) -> None:
        self._reset_pooled("test")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """The model's own `gradient_clip_val` (model.gradient_clip_val), by norm; a Trainer value given with
        +trainer.gradient_clip_val wins. Truncated backprop, which steps the optimiser itself, clips the same."""
        self.clip_gradients(
            optimizer,
            gradient_clip_val=gradient_clip_val or self.gradient_clip_val,
            gradient_clip_algorithm=gradient_clip_algorithm,
        )

    def configure_optimizers(self):
        cfg = dict(self.optimizer_cfg)
        optimizer = OPTIMIZERS[cfg.pop("name", "adam")](self.parameters(), **cfg)
        if not self.scheduler_cfg:
            return optimizer
        cfg = dict(self.scheduler_cfg)
        name = cfg.pop("name")
        if name == "cosine":
            total = self.trainer.estimated_stepping_batches
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(int(total), 1), **cfg)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if name == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **cfg)
            # Not strict: a run without validation (trainer.limit_val_batches=0) keeps its rate, with a warning.
            schedule = {"scheduler": scheduler, "monitor": "val/loss", "strict": False}
            return {"optimizer": optimizer, "lr_scheduler": schedule}
        raise UserError(f"model.scheduler.name must be cosine, plateau or the scheduler null, got {name!r}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lm_music_task"] = self.sampler_class.task_name
        # Dropout draws from torch's generator: a resumed run continues its stream, as if never stopped.
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A checkpoint of the old layout (nets renamed since) resumes too.
        checkpoint["state_dict"] = upgrade_weights(checkpoint["state_dict"], prefix="net.")
        state = checkpoint.get("rng_state")
        if state is not None:
            torch.set_rng_state(state["torch"])
            if (
                state["cuda"]
                and torch.cuda.is_available()
                and len(state["cuda"]) == torch.cuda.device_count()
            ):
                torch.cuda.set_rng_state_all(state["cuda"])


class TokenLitModule(SequenceLitModule):
    """A next-token model over a codec's vocabulary, trained and scored by one cross-entropy step: the shared
    part of the lyrics (characters) and event (MidiTok tokens) modules. The codec and what else the sampler
    takes are hyperparameters, so a checkpoint alone is enough to sample.

    A subclass names its `sampler_class` and may add pooled metrics in `extra_terms`.
    """

    sampler_class: type[TokenSampler] = TokenSampler
    # train.py's cache_* and refrain_*: validation and test also report every metric under this continuous cache
    # and/or refrain, as NAME_cache (the likelihood of what sampling with them draws)
    cache: ContinuousCache | None = None
    refrain: Refrain | None = None

    def __init__(
        self,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        gradient_clip_val: float | None = None,
        **net,
    ) -> None:
        """`net`: the arguments of the task's sampler (codec, sizes), which builds the network."""
        super().__init__(optimizer, scheduler, gradient_clip_val)
        self.save_hyperparameters()
        self.sampler = self.sampler_class(**net)
        self.net = self.sampler.net
        for stage in ("val", "test"):
            for name in self.metric_names:
                self.pooled[f"{stage}_{name}_cache"] = MeanMetric().set_dtype(torch.float64)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None, state=None):
        return self.net(ids, labels, state)

    def token_nll(
        self,
        batch: dict,
        labels: torch.Tensor | None = None,
        cache: ContinuousCache | None = None,
        refrain: Refrain | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """NLL in nats of every predicted token (B, T - 1), 0 at padding, and the mask of real targets; with
        `cache` and/or `refrain`, also the NLL under their mixture (else None), from the same forward pass.
        (A net without labels ignores them.)"""
        ids = batch["sequences"].long()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        features, _ = self.net.features(inputs, labels if labels is not None else batch.get("labels"))
        logits = self.net.head(features)
        pad = self.sampler.codec.PAD
        nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=pad, reduction="none")
        cached = cache.sequence_nll(logits, features, targets, pad) if cache is not None else None
        if refrain is not None:
            separator = self.sampler.separator()
            cached = refrain.sequence_nll(nll if cached is None else cached, targets, pad, separator)
        return nll, targets != pad, cached

    def loss_terms(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        copying = {} if self.training else {"cache": self.cache, "refrain": self.refrain}
        nll, real, cached = self.token_nll(batch, **copying)
        nll_sum, count = nll.sum(), real.sum()
        terms = self.extra_terms(nll_sum, count)
        if cached is not None:
            cached_sum = cached.sum()
            terms["loss_cache"] = (cached_sum, count)
            terms |= {f"{name}_cache": term for name, term in self.extra_terms(cached_sum, count).items()}
        return nll_sum, count, terms

    def extra_terms(self, nll_sum: torch.Tensor, count: torch.Tensor) -> dict:
        """Pooled metrics beside the loss, `{name: (numerator, denominator)}`."""
        return {}

    @torch.no_grad()
    def sequence_nll(
        self, batch: dict, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL in nats of every sequence of a batch (B,) and its number of predicted tokens (B,), under
        `labels` (B,) instead of the batch's own when given (scoring a song as each artist)."""
        nll, real, _ = self.token_nll(batch, labels)
        return nll.sum(1), real.sum(1)
