"""Drawing lyrics without Lightning: the character model with its vocabulary and artists, the drawn texts, and
how they are written and described."""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lm_music.cache import ContinuousCache, Refrain
from lm_music.errors import UserError
from lm_music.io import write_text_atomic
from lm_music.tasks.lyrics.rhyme import draw_rhymed
from lm_music.tasks.lyrics.vocab import CharVocab
from lm_music.tasks.sampler import TokenSampler
from lm_music.tasks.task import architecture, refuse_option

log = logging.getLogger(__name__)


class LyricsSampler(TokenSampler):
    """A character model (`arch`: rnn or transformer) with its vocabulary and artists: text in, text out."""

    task_name = "lyrics"

    def __init__(
        self,
        vocab: str,
        artists: list[str] | None = None,
        conditional: bool = False,
        arch: str = "rnn",
        **sizes,
    ) -> None:
        """`sizes`: the arguments of `TokenRNN` or `TokenTransformer` other than the vocabulary and labels, the
        artist embedding's size as `artist_embedding_dim` (the net's `label_embedding_dim`)."""
        if "artist_embedding_dim" in sizes:
            sizes["label_embedding_dim"] = sizes.pop("artist_embedding_dim")
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
        cache: ContinuousCache | None = None,
        rhyme_candidates: int | None = None,
        refrain: Refrain | None = None,
    ) -> list[str]:
        """`num_samples` texts drawn as one batch: the prime, then up to `length` characters (fewer where the
        model ends the song). `artists` (one per sample) is for conditional models only; `cache`: drawn
        through a continuous cache (`lm_music.cache`); `rhyme_candidates` (1 or None: off): each line
        drawn so many times, one that rhymes kept (`rhyme.draw_rhymed`; the samples one after another);
        `refrain`: a line may be one the song has sung before (`lm_music.cache.Refrain`)."""
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
        if rhyme_candidates is not None and rhyme_candidates != 1:
            return [
                draw_rhymed(
                    self,
                    prime,
                    length,
                    rhyme_candidates,
                    temperature,
                    top_k,
                    top_p,
                    generator,
                    None if labels is None else int(labels[i]),
                    cache,
                    refrain,
                )
                for i in range(num_samples)
            ]
        rows = self.draw_ids(
            prime_ids,
            num_samples,
            length,
            temperature,
            top_k,
            top_p,
            generator,
            labels,
            cache=cache,
            refrain=refrain,
        )
        return [prime + self.vocab.decode(row) for row in rows]


@dataclass
class TextSamples:
    """Drawn lyrics: one text per sample (the prime first, as drawn: what the evaluator judges), and the
    artist each was drawn as. Shown (`str`: the terminal, samples.txt, the page), a text the length limit
    stopped mid-word ends at its last whole word (`primed` and `length`: the prime's and the limit's)."""

    texts: list[str]
    artists: list[str] | None = None
    primed: int = 0
    length: int | None = None

    def __str__(self) -> str:
        blocks = []
        for i, text in enumerate(self.texts):
            header = f"=== sample {i}" + (f" ({self.artists[i]})" if self.artists else "") + " ==="
            shown = whole_words(text, self.primed, self.length) if self.length else text
            blocks.append(f"{header}\n{shown}\n")
        return "\n".join(blocks)


def draw(sampler: LyricsSampler, options, generator: torch.Generator) -> TextSamples:
    """`options`: the sample options' keys (prime, artist, top_k, top_p, ...)."""
    refuse_option("prime_json", options, "event-token (e.g. pretrained=pop909)")
    refuse_option("infill_bars", options, "infilling event-token (e.g. pretrained=pop909_infill)")
    refuse_option("controls", options, "infilling event-token (e.g. pretrained=pop909_infill)")
    refuse_option("prime_midi", options, "piano-roll and event-token")
    refuse_option("min_length", options, "event-token")
    artists = [options.artist] * options.num_samples if options.get("artist") else None
    if artists is None and sampler.conditional:
        artists = [sampler.artists[i % len(sampler.artists)] for i in range(options.num_samples)]
        log.info("no artist= given: cycling through the model's artists")
    texts = sampler.sample(
        options.num_samples,
        options.length,
        temperature=options.temperature,
        prime=options.get("prime") or "",
        artists=artists,
        top_k=options.get("top_k"),
        top_p=options.get("top_p"),
        generator=generator,
        cache=ContinuousCache.from_options(options),
        rhyme_candidates=options.get("rhyme_candidates"),
        refrain=Refrain.from_options(options),
    )
    return TextSamples(texts, artists, len(options.get("prime") or ""), options.length)


def whole_words(text: str, primed: int, length: int) -> str:
    """A text the length limit stopped mid-word, cut back to its last whole word (the prime kept whole);
    one the model ended, as it is."""
    if len(text) - primed < length or text[-1:].isspace():
        return text
    cut = max(text.rfind(" ", primed), text.rfind("\n", primed))
    return text[: cut + 1].rstrip(" ") if cut >= primed else text


def write(samples: TextSamples, out_dir: Path) -> list[Path]:
    path = out_dir / "samples.txt"
    write_text_atomic(path, str(samples))
    return [path]


def describe(hyper: dict) -> str:
    line = f"lyrics, {architecture(hyper)}"
    if hyper.get("conditional"):
        line += f", conditioned on {len(hyper.get('artists') or [])} artists"
    return line
