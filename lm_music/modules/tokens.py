import torch
import torch.nn.functional as F

from lm_music.modules.base import SequenceLM
from lm_music.samplers import TokenSampler


class TokenLM(SequenceLM):
    """A next-token model over a codec's vocabulary, trained and scored by one cross-entropy step: the shared
    part of the lyrics (characters) and event (MidiTok tokens) modules. The codec and what else the sampler
    takes are hyperparameters, so a checkpoint alone is enough to sample.

    A subclass names its `sampler_class` and may add pooled metrics in `extra_terms`.
    """

    sampler_class: type[TokenSampler] = TokenSampler

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

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None, state=None):
        return self.net(ids, labels, state)

    def token_nll(self, batch: dict, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL in nats of every predicted token (B, T - 1), 0 at padding, and the mask of real targets."""
        ids = batch["sequences"].long()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits, _ = self(inputs, labels if labels is not None else batch.get("labels"))
        pad = self.sampler.codec.PAD
        nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=pad, reduction="none")
        return nll, targets != pad

    def loss_terms(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        nll, real = self.token_nll(batch)
        nll_sum, count = nll.sum(), real.sum()
        return nll_sum, count, self.extra_terms(nll_sum, count)

    def extra_terms(self, nll_sum: torch.Tensor, count: torch.Tensor) -> dict:
        """Pooled metrics beside the loss, `{name: (numerator, denominator)}`."""
        return {}

    @torch.no_grad()
    def sequence_nll(
        self, batch: dict, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL in nats of every sequence of a batch (B,) and its number of predicted tokens (B,), under
        `labels` (B,) instead of the batch's own when given (scoring a song as each artist)."""
        nll, real = self.token_nll(batch, labels)
        return nll.sum(1), real.sum(1)
