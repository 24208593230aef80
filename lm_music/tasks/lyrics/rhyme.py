"""Rhyme as a decoding option (`rhyme_candidates`): each line is drawn several times and one that rhymes is kept.

A character model decides where a line ends when it draws the newline, after its last word is written, so
reweighting the newline where the word rhymes (DeepRapper's boost of rhyming tokens, moved to characters) can
only end a line on a rhyme the model happened to write: tried, it raised the shipped model's rhyming lines from
0.07 to 0.08 at a 100x boost, and lengthened its lines (BENCHMARKS.md). Drawing whole lines as candidates gives
the rhyme a choice: from one point of a sample, `candidates` continuations are drawn to their newline as one
batch, and the first whose last word rhymes (CMUdict through `pronouncing`, as the evaluator's `rhyme_rate`) with
the end of one of the two lines before is kept, else the first drawn. A blank line (a verse's end) drawn first is
kept as it is. Every kept line is a draw of the model: the words and the line lengths are its own.
"""

import torch

from lm_music.cache import split_segments
from lm_music.decoding import categorical_draw, one_step_calls, repeat_rows
from lm_music.errors import UserError
from lm_music.tasks.lyrics.features import rhymes, words

MAX_LINE = 200  # characters a candidate line may run to before it is cut


def line_end(text: str) -> str | None:
    found = words(text)
    return found[-1] if found else None


@torch.inference_mode()
def draw_rhymed(
    sampler,
    prime: str,
    length: int,
    candidates: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    label: int | None = None,
    cache=None,
    refrain=None,
) -> str:
    """One text of up to `length` characters after `prime` (a `LyricsSampler`'s), drawn line by line; with a
    `refrain` (`lm_music.cache.Refrain`), a line may be one sung before instead of the candidates."""
    if candidates < 1:
        raise UserError(f"rhyme_candidates must be at least 1 (1: off), got {candidates}")
    vocab, device = sampler.vocab, sampler.device
    newline = int(vocab.encode("\n")[0])
    if newline == vocab.UNK:
        raise UserError("rhyme_candidates needs lines: this model's vocabulary has no newline")
    labels = None if label is None else torch.tensor([label] * candidates, device=device)
    one = sampler.step(None if label is None else labels[:1], cache)
    many = sampler.step(labels, cache)
    draw = categorical_draw(temperature, top_k, top_p, generator)
    ends = [end for end in map(line_end, prime.split("\n")[:-1]) if end][-2:]
    text: list[int] = []
    # the lines a refrain may repeat, and the line the prime leaves open
    sung, unfinished = split_segments(vocab.encode(prime).tolist(), newline)
    with one_step_calls(device):
        logits, state = one(torch.as_tensor(vocab.encode(prime, bos=True), device=device).long()[None], None)
        while len(text) < length:
            again = refrain.pick(sung, newline, generator) if refrain and not unfinished else None
            if again is not None:
                lines = [list(again)]
            else:
                first = logits[:, -1].expand(candidates, -1)
                lines = draw_lines(many, first, repeat_rows(state, candidates), draw, newline, vocab.EOS)
            budget = length - len(text)
            chosen = choose(vocab, lines, ends)[:budget]
            text += chosen
            sung.append((*unfinished, *chosen))
            unfinished = []
            if vocab.EOS in chosen or len(text) >= length:
                break
            if (end := line_end(vocab.decode(chosen))) is not None:
                ends = [*ends[-1:], end]
            logits, state = one(torch.tensor(chosen, device=device)[None], state)
    if vocab.EOS in text:
        text = text[: text.index(vocab.EOS)]
    return prime + vocab.decode(text)


def draw_lines(step, logits, state, draw, newline: int, eos: int) -> list[list[int]]:
    """Candidate lines drawn as one batch from the same point, each to its newline (or the end of the song,
    or MAX_LINE characters)."""
    lines: list[list[int]] = [[] for _ in range(logits.shape[0])]
    done = [False] * len(lines)
    for _ in range(MAX_LINE):
        ids = draw(logits)
        for row, i in enumerate(ids.tolist()):
            if not done[row]:
                lines[row].append(i)
                done[row] = i in (newline, eos)
        if all(done):
            break
        logits, state = step(ids[:, None], state)
        logits = logits[:, -1]
    return lines


def choose(vocab, lines: list[list[int]], ends: list[str]) -> list[int]:
    """The first candidate whose last word rhymes with one of `ends`; the first drawn when none does, or when
    it is a blank line or the song's end."""
    first = vocab.decode(lines[0])
    if not ends or line_end(first) is None or vocab.EOS in lines[0]:
        return lines[0]
    for line in lines:
        end = line_end(vocab.decode(line))
        if end is not None and vocab.EOS not in line and any(rhymes(end, before) for before in ends):
            return line
    return lines[0]
