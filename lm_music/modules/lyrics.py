import math
from typing import Any

import torch
import torch.nn.functional as F

from lm_music.modules.base import SequenceLM
from lm_music.samplers import LyricsSampler
from lm_music.vocab import CharVocab


class LyricsLM(SequenceLM):
    """A character RNN of lyrics, optionally conditioned on the artist; the vocabulary and artist list are
    hyperparameters, so a checkpoint alone is enough to sample."""

    task = "lyrics"
    metric_names = ("loss", "bpc")

    def __init__(
        self,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        gradient_clip_val: float | None = None,
        **net: Any,
    ) -> None:
        """`net`: the arguments of `LyricsSampler` (vocabulary, artists, sizes), which builds the network."""
        super().__init__(optimizer, scheduler, gradient_clip_val)
        self.save_hyperparameters()
        self.sampler = LyricsSampler(**net)
        self.net, self.vocab, self.artists = self.sampler.net, self.sampler.vocab, self.sampler.artists
        self.conditional = self.sampler.conditional

    def forward(self, ids: torch.Tensor, artists: torch.Tensor | None = None, state=None):
        return self.net(ids, artists if self.conditional else None, state)

    def loss_terms(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        ids = batch["sequences"].long()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits, _ = self(inputs, batch.get("labels"))
        nll_sum = F.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=CharVocab.PAD, reduction="sum"
        )
        count = (targets != CharVocab.PAD).sum()
        return nll_sum, count, {"bpc": (nll_sum / math.log(2), count)}

    @torch.no_grad()
    def sequence_nll(
        self, batch: dict, artists: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL in nats of every sequence of a batch (B,) and its number of predicted characters (B,),
        under `artists` (B,) instead of the batch's own labels when given (scoring a song as each artist)."""
        ids = batch["sequences"].long()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits, _ = self(inputs, artists if artists is not None else batch.get("labels"))
        nll = F.cross_entropy(
            logits.transpose(1, 2).float(), targets, ignore_index=CharVocab.PAD, reduction="none"
        )
        return nll.sum(1), (targets != CharVocab.PAD).sum(1)

    def artist_nll(self, batch: dict) -> torch.Tensor:
        """NLL in nats of every sequence of a batch under every artist (B, artists): the artists under which
        a song is most likely are the model's guess of who wrote it (`bench/artists.py`)."""
        labels = batch["labels"]
        return torch.stack(
            [self.sequence_nll(batch, torch.full_like(labels, a))[0] for a in range(len(self.artists))], dim=1
        )

    def sample(self, num_samples: int, length: int, temperature: float = 1.0, **kwargs) -> list[str]:
        """See `LyricsSampler.sample`."""
        return self.sampler.sample(num_samples, length, temperature, **kwargs)

    def tracker_samples(self, num_samples: int, length: int, temperature: float, generator) -> list[dict]:
        """Text samples for the trackers; a conditional model writes two for each of `num_samples` artists,
        so that one can read whether a sample sounds like its artist."""
        if not self.conditional:
            texts = self.sample(num_samples, length, temperature, generator=generator)
            return [{"kind": "text", "tag": f"samples/{i}", "value": t} for i, t in enumerate(texts)]
        artists = [a for a in self.artists[:num_samples] for _ in range(2)]
        texts = self.sample(len(artists), length, temperature, artists=artists, generator=generator)
        return [
            {"kind": "text", "tag": f"samples/{artist} ({i % 2})", "value": text}
            for i, (artist, text) in enumerate(zip(artists, texts))
        ]
