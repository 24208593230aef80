import math
from typing import Any

import torch

from lm_music.tasks.lit_module import TokenLitModule
from lm_music.tasks.lyrics.sampler import LyricsSampler


class LyricsLitModule(TokenLitModule):
    """A character model of lyrics, optionally conditioned on the artist; the vocabulary and artist list are
    hyperparameters, so a checkpoint alone is enough to sample."""

    metric_names = ("loss", "bpc")
    sampler_class = LyricsSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The arguments of `TokenLitModule`: training settings, and those of `LyricsSampler` (vocabulary, artists,
        sizes)."""
        super().__init__(*args, **kwargs)
        self.vocab, self.artists = self.sampler.vocab, self.sampler.artists
        self.conditional = self.sampler.conditional

    def forward(self, ids: torch.Tensor, artists: torch.Tensor | None = None, state=None):
        return self.net(ids, artists if self.conditional else None, state)

    def extra_terms(self, nll_sum: torch.Tensor, count: torch.Tensor) -> dict:
        return {"bpc": (nll_sum / math.log(2), count)}

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

    def tracker_samples(
        self, num_samples: int, length: int, temperature: float, generator, renderer=None
    ) -> list[dict]:
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
