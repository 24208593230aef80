"""Sampling a trained model without Lightning.

A sampler is the network plus what drawing from it needs (a codec: the character vocabulary and artists, or
the MidiTok tokenizer; or the time grid and opening frames), built from a model's hyperparameters (`checkpoints.sampler_from_checkpoint` loads one).
The Lightning modules build their network through one and sample through it, so `sample.py`, which loads
only the sampler (and so starts without importing Lightning), draws exactly what a training run's tracker
samples draw. Samplers know networks, not files.
"""

import inspect

import torch

from lm_music.decoding import categorical_draw, generate
from lm_music.errors import UserError
from lm_music.events import EventCodec
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


TOKEN_ARCHS = {"rnn": CharRNN, "transformer": CharTransformer}  # the token models, whatever the tokens are


class TokenSampler(Sampler):
    """A next-token model (`arch`: rnn or transformer) over a codec's vocabulary: the one family behind lyrics
    (characters <-> text) and event models (MidiTok tokens <-> MIDI). A subclass says how ids are made and
    read (`codec`, with `pad`, `bos` and `eos` ids) and builds `net` with `token_network`."""

    codec: CharVocab | EventCodec

    def token_network(self, arch: str, num_labels: int = 0, **sizes) -> torch.nn.Module:
        """The token model over this codec's vocabulary (`num_labels`: artists of a conditional model)."""
        return network(TOKEN_ARCHS, arch, vocab_size=len(self.codec), num_artists=num_labels, **sizes)

    def draw_ids(
        self,
        prime_ids: list[int],
        num_samples: int,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
        grammar=None,
    ) -> list[list[int]]:
        """`num_samples` id lists drawn as one batch after `prime_ids`, up to `length` each, cut before the
        end id where the model ends the piece (the prime not included). `grammar` (an `events.GrammarMask`)
        masks the ids that cannot come next before each draw."""
        prime = torch.as_tensor(prime_ids, device=self.device).long()
        draw = categorical_draw(temperature, top_k, top_p, generator)
        if grammar is not None:
            unmasked = draw

            def draw(logits: torch.Tensor) -> torch.Tensor:
                ids = unmasked(grammar.mask(logits))
                grammar.update(ids)
                return ids

        ids = generate(
            lambda x, state: self.net(x, labels, state), prime[None].expand(num_samples, -1), length, draw
        )
        rows = ids.tolist()
        return [row[: row.index(self.codec.EOS)] if self.codec.EOS in row else row for row in rows]


class LyricsSampler(TokenSampler):
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
        self.vocab = self.codec = CharVocab(vocab)
        self.artists = list(artists or [])
        if conditional and not self.artists:
            raise UserError(
                "a conditional lyrics model needs artists: set data.artist_column to the CSV's artist column"
            )
        self.conditional = conditional
        self.net = self.token_network(arch, len(self.artists) if conditional else 0, **sizes)

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
        prime_ids = self.vocab.encode(prime, bos=True).tolist()
        rows = self.draw_ids(prime_ids, num_samples, length, temperature, top_k, top_p, generator, labels)
        return [prime + self.vocab.decode(row) for row in rows]


class EventSampler(TokenSampler):
    """An event-token model (`arch`: rnn or transformer) with its MidiTok tokenizer: MIDI in, MIDI out."""

    def __init__(self, tokenizer: dict, arch: str = "rnn", **sizes) -> None:
        """`tokenizer`: the tokenizer's full parameters (`events.tokenizer_params`); `sizes`: the arguments of
        `CharRNN` or `CharTransformer` other than the vocabulary."""
        self.codec = EventCodec(tokenizer)
        self.net = self.token_network(arch, **sizes)

    def sample(
        self,
        num_samples: int,
        length: int,
        temperature: float = 1.0,
        prime_ids: list[int] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        grammar: bool = True,
    ) -> list[list[int]]:
        """`num_samples` id lists drawn as one batch: the prime's ids (the start id when none), then up to
        `length` drawn ids (fewer where the model ends the piece). Decode them with `codec.decode`. With
        `grammar`, each draw is kept to the ids MidiTok's grammar lets follow (`events.GrammarMask`; not for
        a BPE vocabulary); without it, what the model draws is what it gives."""
        prime = list(prime_ids) if prime_ids is not None else [self.codec.BOS]
        mask = self.codec.grammar(prime, num_samples) if grammar else None
        rows = self.draw_ids(prime, num_samples, length, temperature, top_k, top_p, generator, grammar=mask)
        return [prime + row for row in rows]


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
