"""The rhyme decoding option (lm_music/tasks/lyrics/rhyme.py): each line drawn as several candidates from the
same point, one that rhymes kept; with one candidate it draws what plain sampling draws, and the shipped model's
lines rhyme far more with eight."""

import numpy as np
import pytest
import torch

from lm_music.cache import ContinuousCache
from lm_music.errors import UserError
from lm_music.generation import load_model
from lm_music.tasks.lyrics.features import lines, rhyme_rate
from lm_music.tasks.lyrics.rhyme import choose, draw_rhymed
from lm_music.tasks.lyrics.sampler import LyricsSampler
from lm_music.tasks.lyrics.vocab import CharVocab

VOCAB = CharVocab("\n ,abcdefghijklmnopqrstuvwxyz")


def ids(text: str) -> list[int]:
    return VOCAB.encode(text).tolist()


@pytest.mark.parametrize(
    ("candidates", "ends", "kept"),
    [
        (["the day\n", "the light\n", "the sight\n"], ["night"], 1),  # the first that rhymes
        (["the day\n", "the way\n"], ["night"], 0),  # none rhymes: the first drawn
        (["\n", "the light\n"], ["night"], 0),  # a verse's end drawn first stays
        (["the day\n", "the light\n"], [], 0),  # nothing to rhyme with yet
        (["the day\n", "we see the night\n"], ["night"], 0),  # the same word is repetition, not rhyme
        (["the sun\n", "and stay\n"], ["night", "way"], 1),  # two lines back counts (ABAB)
    ],
)
def test_the_first_rhyming_candidate_is_kept(candidates, ends, kept):
    assert choose(VOCAB, [ids(c) for c in candidates], ends) == ids(candidates[kept])


class WithBias(torch.nn.Module):
    """An untrained net with a bias on its logits: newlines common, the song's end rare, so that it writes lines."""

    def __init__(self, net: torch.nn.Module, vocab: CharVocab) -> None:
        super().__init__()
        self.inner = net
        self.bias = torch.zeros(len(vocab))
        self.bias[vocab.EOS], self.bias[vocab.encode("\n")[0]] = -20.0, 1.5

    def features(self, ids, labels=None, state=None):
        return self.inner.features(ids, labels, state)

    def head(self, features):
        return self.inner.head(features) + self.bias

    def forward(self, ids, labels=None, state=None):
        features, state = self.features(ids, labels, state)
        return self.head(features), state


VOCAB_OF_FOUR = CharVocab("\n ab")


@pytest.fixture
def one_thread():
    """Hundreds of one-position steps: on a busy machine, every extra thread's wake-up costs more than the step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
@pytest.mark.parametrize("cache", [None, ContinuousCache(0.2)])
def test_one_candidate_draws_what_plain_sampling_draws(arch, cache, one_thread):
    """Line by line, the state carried by re-reading each kept line: the same text, draw for draw, as one pass."""
    torch.manual_seed(0)
    sizes = {"rnn": {"hidden_size": 32, "embedding_dim": 16}, "transformer": {"d_model": 32, "context": 16}}
    sampler = LyricsSampler("\n ab", arch=arch, **sizes[arch])
    sampler.net = WithBias(sampler.net.eval(), VOCAB_OF_FOUR)
    newlines = []
    for seed in range(3):
        plain = sampler.sample(1, 80, generator=torch.Generator().manual_seed(seed), prime="ab", cache=cache)[
            0
        ]
        lined = draw_rhymed(sampler, "ab", 80, 1, generator=torch.Generator().manual_seed(seed), cache=cache)
        assert lined == plain
        newlines.append(plain.count("\n"))
    assert min(newlines) >= 3


def test_bad_candidates_are_one_line():
    sampler = LyricsSampler(VOCAB.chars, hidden_size=8, embedding_dim=8)
    with pytest.raises(UserError, match="rhyme_candidates must be at least 1"):
        draw_rhymed(sampler, "", 10, 0)


@pytest.mark.slow
def test_the_shipped_model_rhymes_far_more_with_eight_candidates():
    model = load_model("pretrained:lyrics", "cpu")

    def rate(candidates: int) -> float:
        generator = torch.Generator().manual_seed(0)
        texts = model.sampler.sample(16, 400, 0.6, generator=generator, rhyme_candidates=candidates)
        return float(np.nanmean([rhyme_rate(lines(text)) for text in texts]))

    assert rate(8) > rate(1) + 0.1
