import math

import torch
import torch.nn.functional as F

from lm_music.data.lyrics import CharVocab
from lm_music.decoding import categorical_draw, generate
from lm_music.errors import UserError
from lm_music.models.char_rnn import CharRNN
from lm_music.modules.base import SequenceLM


class LyricsLM(SequenceLM):
    """A character RNN of lyrics, optionally conditioned on the artist; the vocabulary and artist list are
    hyperparameters, so a checkpoint alone is enough to sample."""

    task = "lyrics"
    metric_names = ("loss", "bpc")

    def __init__(
        self,
        vocab: str,
        artists: list[str] | None = None,
        conditional: bool = False,
        cell: str = "lstm",
        num_layers: int = 2,
        hidden_size: int = 512,
        embedding_dim: int = 512,
        artist_embedding_dim: int = 512,
        dropout: float = 0.0,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters()
        self.vocab = CharVocab(vocab)
        self.artists = list(artists or [])
        if conditional and not self.artists:
            raise UserError(
                "a conditional lyrics model needs artists: set data.artist_column to the CSV's artist column"
            )
        self.conditional = conditional
        self.net = CharRNN(
            vocab_size=len(self.vocab),
            embedding_dim=embedding_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            cell=cell,
            dropout=dropout,
            num_artists=len(self.artists) if conditional else 0,
            artist_embedding_dim=artist_embedding_dim,
        )

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

    def artist_ids(self, artists: list[str]) -> list[int]:
        """Indices of artist names; an unknown name is a UserError that lists the known ones."""
        known = {a: i for i, a in enumerate(self.artists)}
        unknown = [a for a in artists if a not in known]
        if unknown:
            shown = ", ".join(self.artists[:30]) + (" ..." if len(self.artists) > 30 else "")
            raise UserError(f"unknown artist {unknown[0]!r}; this model knows {len(self.artists)}: {shown}")
        return [known[a] for a in artists]

    def sample(
        self,
        num_samples: int,
        length: int,
        temperature: float = 1.0,
        prime: str = "",
        artists: list[str] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """`num_samples` texts drawn as one batch: the prime, then up to `length` characters (fewer where the
        model ends the song). `artists` (one per sample) is for conditional models only."""
        if artists is not None and not self.conditional:
            raise UserError("artist= was given, but this model is not conditioned on artists: leave it out")
        if self.conditional and artists is None:
            raise UserError(
                f"this model is conditioned on artists: pass artist=NAME, e.g. {self.artists[0]!r}"
            )
        labels = None
        if artists is not None:
            labels = torch.tensor(self.artist_ids(artists), device=self.device)
        prime_ids = torch.as_tensor(self.vocab.encode(prime, bos=True), device=self.device).long()
        ids = generate(
            lambda x, state: self(x, labels, state),
            prime_ids[None].expand(num_samples, -1),
            length,
            categorical_draw(temperature, top_k, top_p, generator),
        )
        texts = []
        for row in ids.tolist():
            if CharVocab.EOS in row:
                row = row[: row.index(CharVocab.EOS)]
            texts.append(prime + self.vocab.decode(row))
        return texts

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
