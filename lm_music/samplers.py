"""Sampling a trained model without Lightning.

A sampler is the network plus what drawing from it needs (vocabulary and artists, or the time grid and
opening frames), built from a model's hyperparameters (`checkpoints.sampler_from_checkpoint` loads one).
The Lightning modules build their network through one and sample through it, so `sample.py`, which loads
only the sampler (and so starts without importing Lightning), draws exactly what a training run's tracker
samples draw. Samplers know networks, not files.
"""

import inspect

import torch

from lm_music.decoding import categorical_draw, generate
from lm_music.errors import UserError
from lm_music.midi import LOWEST_PITCH, NUM_KEYS
from lm_music.models.char_rnn import CharRNN
from lm_music.models.pianoroll_rnn import PianoRollRNN
from lm_music.models.transformer import CharTransformer, PianoRollTransformer
from lm_music.vocab import CharVocab


def network(archs: dict[str, type], arch: str, **sizes) -> torch.nn.Module:
    """The network of architecture `arch` (`model.arch`), built from its sizes."""
    if arch not in archs:
        raise UserError(f"model.arch must be one of {sorted(archs)}, got {arch!r}")
    known = inspect.signature(archs[arch]).parameters
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise UserError(
            f"model.{unknown[0]} is not a setting of model.arch={arch}; it takes: {', '.join(known)}"
        )
    return archs[arch](**sizes)


class Sampler:
    """A network and what drawing from it needs."""

    net: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


class LyricsSampler(Sampler):
    """A character model (`arch`: rnn or transformer) with its vocabulary and artists: text in, text out."""

    def __init__(
        self,
        vocab: str,
        artists: list[str] | None = None,
        conditional: bool = False,
        arch: str = "rnn",
        **sizes,
    ) -> None:
        """`sizes`: the arguments of `CharRNN` or `CharTransformer` other than the vocabulary and artists."""
        self.vocab = CharVocab(vocab)
        self.artists = list(artists or [])
        if conditional and not self.artists:
            raise UserError(
                "a conditional lyrics model needs artists: set data.artist_column to the CSV's artist column"
            )
        self.conditional = conditional
        self.net = network(
            {"rnn": CharRNN, "transformer": CharTransformer},
            arch,
            vocab_size=len(self.vocab),
            num_artists=len(self.artists) if conditional else 0,
            **sizes,
        )

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
            lambda x, state: self.net(x, labels, state),
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


class PianoRollSampler(Sampler):
    """A piano-roll model (`arch`: rnn or transformer) with its time grid and, for a model without a learned
    start, the opening frames of training pieces to start from."""

    def __init__(
        self,
        frames_per_beat: int | None = 2,
        fs: float | None = None,
        openings: list[list[int]] | None = None,
        arch: str = "rnn",
        **sizes,
    ) -> None:
        """`sizes`: the arguments of `PianoRollRNN` or `PianoRollTransformer` (sizes, head)."""
        self.frames_per_beat, self.fs = frames_per_beat, fs
        self.openings = [list(o) for o in (openings or [])]
        self.net = network(
            {"rnn": PianoRollRNN, "transformer": PianoRollTransformer}, arch, num_keys=NUM_KEYS, **sizes
        )

    def sample(
        self,
        num_samples: int,
        length: int,
        temperature: float = 1.0,
        prime: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`num_samples` rolls (B, P + length, 88) uint8 drawn as one batch: `prime` (P, 88) and `length` frames
        drawn after it; without a prime, `length` frames (P = 0), all drawn by a model with a learned start,
        else the first the opening frame of a training piece chosen at random."""
        learned_start = self.net.start is not None
        if prime is not None:
            frames = prime.to(self.device).float()[None].expand(num_samples, -1, -1)
        elif learned_start:
            frames = torch.zeros(num_samples, 0, NUM_KEYS, device=self.device)
        else:
            frames = torch.zeros(num_samples, 1, NUM_KEYS, device=self.device)
            if self.openings:
                picks = torch.randint(
                    len(self.openings), (num_samples,), generator=generator, device=self.device
                )
                for i, pick in enumerate(picks.tolist()):
                    frames[i, 0, [p - LOWEST_PITCH for p in self.openings[pick]]] = 1.0
            length -= 1
        if length > 0:
            drawn = generate(
                lambda x, state: self.net(x, state, start=learned_start and state is None),
                frames,
                length,
                lambda h: self.net.head.sample(h, temperature, generator),
            )
            frames = torch.cat([frames, drawn], dim=1)
        return frames.to(torch.uint8)
