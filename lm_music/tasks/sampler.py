"""Sampling a trained model without Lightning: the base every task's sampler is built on.

A sampler is the network plus what drawing from it needs (a codec: the character vocabulary and artists, or
the MidiTok tokenizer; or the time grid and opening frames), built from a model's hyperparameters
(`checkpoints.sampler_from_checkpoint` loads one). The Lightning modules build their network through one and
sample through it, so `sample.py`, which loads only the sampler (and so starts without importing Lightning),
draws exactly what a training run's tracker samples draw. Samplers know networks, not files.
"""

import inspect
import math

import torch

from lm_music.cache import CachedNet, ContinuousCache, Refrain, RefrainDraw
from lm_music.decoding import categorical_draw, generate
from lm_music.errors import UserError
from lm_music.nets.token import TokenRNN, TokenTransformer


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


class NetworkSampler:
    """A network and what drawing from it needs; each task's sampler is one. (Not a `torch.utils.data.Sampler`.)

    `task_name` is the task's name in checkpoints (`lm_music_task`) and exported configs (`task`)."""

    task_name: str

    net: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


TOKEN_ARCHS = {"rnn": TokenRNN, "transformer": TokenTransformer}  # the token models, whatever the tokens are


class TokenSampler(NetworkSampler):
    """A next-token model (`arch`: rnn or transformer) over a codec's vocabulary: the one family behind lyrics
    (characters <-> text) and event models (MidiTok tokens <-> MIDI). A subclass says how ids are made and
    read (`codec`, with `pad`, `bos` and `eos` ids) and builds `net` with `token_network`."""

    codec: object  # a CharVocab or an EventCodec: __len__, encode, decode and the PAD, BOS, EOS ids

    def token_network(self, arch: str, num_labels: int = 0, **sizes) -> torch.nn.Module:
        """The token model over this codec's vocabulary (`num_labels`: artists of a conditional model)."""
        return network(TOKEN_ARCHS, arch, vocab_size=len(self.codec), num_labels=num_labels, **sizes)

    def step(self, labels: torch.Tensor | None = None, cache: ContinuousCache | None = None):
        """`decoding.generate`'s step: the net (under `labels`), through the continuous cache when given."""
        return CachedNet(self.net, cache, labels) if cache else lambda x, state: self.net(x, labels, state)

    def separator(self) -> int:
        """The id that ends a segment a refrain repeats; a model without one cannot take a refrain."""
        if self.codec.separator is None:
            raise UserError(
                "refrain_* needs lines or bars, and this model's tokens have no newline or Bar token"
            )
        return self.codec.separator

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
        processor=None,
        cache: ContinuousCache | None = None,
        min_length: int = 0,
        refrain: Refrain | None = None,
    ) -> list[list[int]]:
        """`num_samples` id lists drawn as one batch after `prime_ids`, up to `length` each, cut before the
        end id where the model ends the piece (the prime not included). `processor` reweights the logits before
        each draw (`processor.mask(logits)`) and sees each draw (`processor.update(ids)`), as the events'
        `GrammarMask` masks the ids that cannot come next; `cache` draws from the net mixed with a continuous
        cache over the sequence so far (`lm_music.cache`); `min_length`: the end id is not drawn before that
        many ids (Hugging Face's `min_new_tokens`), so that a piece is never ended before it has begun; `refrain`:
        each segment (`codec.separator`'s lines or bars) may be one the sample has had before (`lm_music.cache`)."""
        prime = torch.as_tensor(prime_ids, device=self.device).long()
        unmasked, drawn = categorical_draw(temperature, top_k, top_p, generator), [0]
        copies = None
        if refrain is not None:
            # the prime's first id is the start token, which scoring never predicts
            copies = RefrainDraw(refrain, self.separator(), [list(prime_ids[1:])] * num_samples, generator)

        def draw(logits: torch.Tensor) -> torch.Tensor:
            if processor is not None:
                logits = processor.mask(logits)
            if drawn[0] < min_length:
                logits = logits.clone()
                logits[..., self.codec.EOS] = -math.inf
            ids = unmasked(logits)
            if copies is not None:
                ids = copies.force(ids)
            drawn[0] += 1
            if processor is not None:
                processor.update(ids)
            return ids

        prime = prime[None].expand(num_samples, -1)
        # a processor that knows when every row has ended (the infilling's `BarControl`) stops the loop there
        ids = generate(self.step(labels, cache), prime, length, draw, getattr(processor, "finished", None))
        rows = ids.tolist()
        return [row[: row.index(self.codec.EOS)] if self.codec.EOS in row else row for row in rows]
