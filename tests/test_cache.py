"""The continuous cache (lm_music/cache.py): an exact, normalised mixture; scoring a sequence at once gives what
sampling it token by token gives (so the reported likelihood is that of what is drawn), for the LSTM and the
Transformer; it makes a repeat cheaper; the test step reports it; bad settings are one line."""

import math

import pytest
import torch

from lm_music.cache import CachedNet, ContinuousCache
from lm_music.decoding import generate
from lm_music.errors import UserError
from lm_music.nets.token import TokenRNN, TokenTransformer

PAD = 0


def nets(num_labels: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "rnn": TokenRNN(20, embedding_dim=16, hidden_size=24, num_layers=2, num_labels=num_labels).eval(),
        "transformer": TokenTransformer(
            20, d_model=32, n_layer=2, n_head=4, context=16, dropout=0.0, num_labels=num_labels
        ).eval(),
    }


class LastToken(torch.nn.Module):
    """A net whose feature is its input token alone and whose own prediction is uniform: the cache's pointer is
    then exact (it points at what followed the same token before), so what copying does can be measured."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(20, 20)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def features(self, ids, labels=None, state=None):
        return torch.nn.functional.one_hot(ids, 20).float(), state

    def forward(self, ids, labels=None, state=None):
        return self.head(self.features(ids)[0]), state


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
@pytest.mark.parametrize("window", [None, 7])
def test_token_by_token_is_the_sequence_read_at_once(arch, window):
    """The log-probabilities that sampling draws from (the prime, then one token a step, through CachedNet)
    are those that scoring the whole sequence gives, past the Transformer's context too."""
    net, cache = nets(num_labels=2)[arch], ContinuousCache(0.2, theta=0.5, window=window)
    ids = torch.randint(1, 20, (3, 40), generator=torch.Generator().manual_seed(1))
    inputs, targets, labels = ids[:, :-1], ids[:, 1:], torch.tensor([0, 1, 1])
    with torch.no_grad():
        features, _ = net.features(inputs, labels)
        whole = cache.sequence_nll(net.head(features), features, targets, PAD)
        step = CachedNet(net, cache, labels)
        parts, state = [], None
        for chunk in (inputs[:, :5], *inputs[:, 5:].split(1, dim=1)):
            log_probs, state = step(chunk, state)
            parts.append(log_probs)
    stepped = torch.cat(parts, 1)
    torch.testing.assert_close(-stepped.gather(-1, targets[..., None])[..., 0], whole, atol=1e-4, rtol=1e-4)
    assert torch.allclose(stepped.exp().sum(-1), torch.ones(3, 39), atol=1e-5)  # normalised at every position
    plain = -net.head(features).log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    assert not torch.allclose(whole, plain, atol=1e-3)  # and not the model alone


def test_the_cache_makes_a_repeat_cheaper_and_leaves_the_first_token_to_the_model():
    net = LastToken()
    phrase = torch.randperm(19, generator=torch.Generator().manual_seed(3))[None, :12] + 1
    ids = torch.cat([phrase, phrase, phrase], 1)
    with torch.no_grad():
        features, _ = net.features(ids[:, :-1])
        logits = net.head(features)
        targets = ids[:, 1:]
        plain = -logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        cached = ContinuousCache(0.5, theta=50.0).sequence_nll(logits, features, targets, PAD)
    assert torch.allclose(cached[:, 0], plain[:, 0])  # nothing seen yet: the model alone
    # the second and third time through, each token costs -log((1 - 0.5) / 20 + 0.5) nats, not log(20)
    torch.testing.assert_close(
        cached[:, 12:], torch.full((1, 23), -math.log(0.5 / 20 + 0.5)), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(plain[:, 12:], torch.full((1, 23), math.log(20)))


def test_padding_is_never_a_key():
    net = nets()["rnn"]
    ids = torch.randint(1, 20, (2, 10), generator=torch.Generator().manual_seed(4))
    padded = torch.cat([ids, torch.full((2, 5), PAD)], 1)
    cache = ContinuousCache(0.3)
    with torch.no_grad():
        features, _ = net.features(padded[:, :-1])
        logits = net.head(features)
        short = cache.sequence_nll(logits[:, :9], features[:, :9], ids[:, 1:], PAD)
        long = cache.sequence_nll(logits, features, padded[:, 1:], PAD)
    torch.testing.assert_close(long[:, :9], short)
    assert not long[:, 9:].any()


def test_sampling_with_the_cache_repeats_what_it_has_seen():
    """A large lambda and a sharp theta copy: drawn sequences repeat the prime's bigrams far more often."""
    net = LastToken()
    prime = torch.randint(1, 20, (8, 30), generator=torch.Generator().manual_seed(5))

    def repeats(step) -> float:
        generator = torch.Generator().manual_seed(0)
        drawn = generate(
            step,
            prime,
            60,
            lambda logits: torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0],
        )
        seen = [set(zip(row[:29], row[1:30], strict=True)) for row in prime.tolist()]
        pairs = [list(zip(row[:-1], row[1:], strict=True)) for row in drawn.tolist()]
        return sum(p in s for s, row in zip(seen, pairs, strict=True) for p in row) / sum(map(len, pairs))

    plain = repeats(lambda x, state: net(x, None, state))
    cached = repeats(CachedNet(net, ContinuousCache(0.9, theta=5.0)))
    assert cached > plain + 0.2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cache_lambda": 1.0}, "cache_lambda must be in [0, 1)"),
        ({"cache_lambda": 0.1, "cache_theta": -1}, "cache_theta must be >= 0"),
        ({"cache_lambda": 0.1, "cache_window": 0}, "cache_window must be at least 1"),
    ],
)
def test_bad_settings_are_one_line(options, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
        ContinuousCache.from_options(options)


def test_no_lambda_is_no_cache():
    assert ContinuousCache.from_options({"cache_lambda": 0.0, "cache_theta": 0.3}) is None
    assert ContinuousCache.from_options({}) is None


def test_the_test_step_reports_each_metric_with_and_without_the_cache():
    from lm_music.tasks.lyrics.lit_module import LyricsLitModule

    torch.manual_seed(0)
    module = LyricsLitModule(vocab="abc \n", arch="rnn", num_layers=1, hidden_size=16, embedding_dim=8).eval()
    ids = torch.tensor([[2, 5, 6, 7, 5, 6, 7, 5, 6, 7, 3]])
    batch = {"sequences": ids, "lengths": torch.tensor([11])}
    with torch.no_grad():
        _, count, plain_terms = module.loss_terms(batch)
        assert "loss_cache" not in plain_terms
        module.cache = ContinuousCache(0.3, theta=2.0)
        nll_sum, count, terms = module.loss_terms(batch)
    cached_sum = terms["loss_cache"][0]
    assert set(terms) == {"bpc", "loss_cache", "bpc_cache"}
    assert terms["bpc_cache"][0] == pytest.approx(float(cached_sum) / math.log(2))
    assert float(cached_sum) != pytest.approx(float(nll_sum))
