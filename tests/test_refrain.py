"""The refrain (lm_music/cache.py, `Refrain`): whole segments (lines, bars) sung again. Its likelihood is exact and
normalised, scoring and drawing follow the same rule (a refrain goes on as it went), the test step reports it,
samplers of lyrics and events draw with it, and bad settings are one line."""

import math

import pytest
import torch

from lm_music.cache import Refrain, RefrainDraw
from lm_music.errors import UserError
from lm_music.tasks.events.codec import make_tokenizer, tokenizer_params
from lm_music.tasks.events.sampler import EventSampler
from lm_music.tasks.lyrics.sampler import LyricsSampler

PAD, SEP, A, B, C = 0, 9, 4, 5, 6


def score(refrain: Refrain, ids: list[int], costs: list[float]) -> list[float]:
    nll = torch.tensor([costs], dtype=torch.float64)
    return refrain.sequence_nll(nll, torch.tensor([ids]), PAD, SEP)[0].tolist()


def test_a_repeated_line_costs_the_mixture_and_a_new_one_its_own_cost_and_the_miss():
    refrain = Refrain(0.2)
    ids = [A, B, SEP, A, B, SEP, C, SEP]
    out = score(refrain, ids, [1.0] * len(ids))
    assert out[:3] == [0.0, 0.0, 3.0]  # the first line: the net's cost, on its last token
    assert out[5] == pytest.approx(-math.log(0.8 * math.exp(-3.0) + 0.2))  # sung again: copied or written
    assert out[7] == pytest.approx(2.0 - math.log(0.8))  # new: written, and not copied
    assert sum(out) == pytest.approx(sum(score(refrain, ids, [1.0] * len(ids))))


def test_a_refrain_goes_on_as_it_went_before():
    """After A B ... A, the line that followed A before (B) takes the boost and `follow` is the chance (the A
    just sung is a candidate too: a line may come twice in a row)."""
    refrain = Refrain(0.1, follow=0.6, boost=3.0)
    lines = [(A, SEP), (B, SEP), (C, SEP), (A, SEP)]
    lam, shares = refrain.choices(lines, SEP)
    assert lam == 0.6
    assert shares == pytest.approx({(A, SEP): 2 / 7, (B, SEP): 4 / 7, (C, SEP): 1 / 7})
    assert refrain.choices(lines[:3], SEP)[0] == 0.1  # C has not been heard before: a refrain may start
    ids = [i for line in [*lines, (B, SEP)] for i in line]
    out = score(refrain, ids, [1.0] * len(ids))
    assert out[-1] == pytest.approx(-math.log(0.4 * math.exp(-2.0) + 0.6 * 4 / 7))


def test_the_mixture_is_normalised():
    """A net that ends a line with chance 1/2 after each token: the second line's probabilities, over every
    line it could be, sum to one with the refrain as without."""
    refrain = Refrain(0.3, follow=0.5, boost=2.0)
    first = [A, A, SEP]
    total = 0.0
    for n in range(60):
        line = [A] * n + [SEP]
        ids = first + line
        total += math.exp(-sum(score(refrain, ids, [math.log(2)] * len(ids))[len(first) :]))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_padding_and_an_unfinished_last_line_are_scored_as_the_sequence_alone():
    refrain = Refrain(0.4)
    ids = [A, SEP, A, SEP, A]
    costs = [0.5, 0.7, 0.5, 0.7, 2.0]
    alone = score(refrain, ids, costs)
    padded = score(refrain, [*ids, PAD, PAD], [*costs, 0.0, 0.0])
    assert padded[:5] == pytest.approx(alone)
    assert padded[5:] == [0.0, 0.0]
    assert alone[-1] == pytest.approx(2.0 - math.log(0.6))  # the last line cannot be a copy: it is unfinished


def test_drawing_copies_the_line_the_scoring_says():
    """Nearly always a refrain: after the prime's A B / C, the draw gives A B again (the only whole earlier
    segment to follow C is none, so q is uniform; with one segment before, it is that one)."""
    copies = RefrainDraw(Refrain(0.999), SEP, [[A, B, SEP]], torch.Generator().manual_seed(0))
    drawn = [int(copies.force(torch.tensor([C]))[0]) for _ in range(6)]
    assert drawn == [A, B, SEP, A, B, SEP]
    never = RefrainDraw(Refrain(0.0), SEP, [[A, B, SEP]], torch.Generator().manual_seed(0))
    assert [int(never.force(torch.tensor([C]))[0]) for _ in range(3)] == [C, C, C]


def test_the_test_step_reports_the_refrain_as_the_cache_metrics():
    from lm_music.tasks.lyrics.lit_module import LyricsLitModule

    torch.manual_seed(0)
    module = LyricsLitModule(vocab="ab \n", arch="rnn", num_layers=1, hidden_size=16, embedding_dim=8).eval()
    newline = module.sampler.codec.separator
    line = module.sampler.codec.encode("ab a\n").tolist()
    ids = torch.tensor([[2, *line, *line, *line, 3]])
    batch = {"sequences": ids, "lengths": torch.tensor([ids.shape[1]])}
    with torch.no_grad():
        nll_sum, _, plain = module.loss_terms(batch)
        module.refrain = Refrain(0.3)
        _, _, terms = module.loss_terms(batch)
    assert newline == line[-1] and "loss_cache" not in plain
    assert set(terms) == {"bpc", "loss_cache", "bpc_cache"}
    assert float(terms["loss_cache"][0]) < float(nll_sum)  # a line sung three times is cheaper with it


def lines_repeated(text: str) -> float:
    lines = [line for line in text.split("\n")[:-1] if line.strip()]
    return sum(line in lines[:i] for i, line in enumerate(lines)) / max(1, len(lines))


@pytest.mark.parametrize("candidates", [None, 4])
def test_lyrics_samples_sing_lines_again(candidates):
    torch.manual_seed(0)
    sampler = LyricsSampler("abc \n", arch="rnn", num_layers=1, hidden_size=16, embedding_dim=8)

    def texts(refrain: Refrain | None) -> list[str]:
        generator = torch.Generator().manual_seed(0)
        kept = {"rhyme_candidates": candidates, "refrain": refrain}
        return sampler.sample(4, 300, prime="ab c\n", generator=generator, **kept)

    plain = sum(map(lines_repeated, texts(None))) / 4
    sung = sum(map(lines_repeated, texts(Refrain(0.8, follow=0.9, boost=5.0)))) / 4
    assert sung > plain + 0.4


def test_event_samples_play_bars_again():
    torch.manual_seed(0)
    sampler = EventSampler(
        tokenizer_params(make_tokenizer("REMI")), arch="rnn", hidden_size=32, embedding_dim=16, num_layers=1
    )
    bar = sampler.codec.separator

    def bars_repeated(refrain: Refrain | None) -> float:
        rows = sampler.sample(4, 400, generator=torch.Generator().manual_seed(0), refrain=refrain)
        shares = []
        for row in rows:
            cuts = [i for i, t in enumerate(row) if t == bar]
            bars = [tuple(row[a:b]) for a, b in zip(cuts, cuts[1:], strict=False) if b - a > 1]
            shares.append(sum(b in bars[:i] for i, b in enumerate(bars)) / max(1, len(bars)))
        return sum(shares) / len(shares)

    assert bars_repeated(Refrain(0.9, follow=0.9, boost=5.0)) > bars_repeated(None) + 0.4
    with pytest.raises(UserError, match="one or the other"):
        sampler.sample(1, 10, refrain=Refrain(0.5), controls=[[bar]])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"refrain_start": 1.0}, "refrain_start must be in [0, 1)"),
        ({"refrain_start": 0.1, "refrain_follow": -0.1}, "refrain_follow must be in [0, 1)"),
        ({"refrain_start": 0.1, "refrain_boost": -1}, "refrain_boost must be >= 0"),
    ],
)
def test_bad_settings_are_one_line(options, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
        Refrain.from_options(options)


def test_no_chance_is_no_refrain_and_a_model_without_lines_cannot_take_one():
    assert Refrain.from_options({"refrain_start": 0.0, "refrain_follow": 0.5, "refrain_boost": 30}) is None
    assert Refrain.from_options({}) is None
    sampler = LyricsSampler("ab ", arch="rnn", num_layers=1, hidden_size=8, embedding_dim=4)
    with pytest.raises(UserError, match="no newline or Bar token"):
        sampler.sample(1, 10, refrain=Refrain(0.5))
