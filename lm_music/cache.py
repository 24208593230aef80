"""A continuous cache over a token model's top-layer features (Grave, Joulin & Usunier 2017, "Improving Neural
Language Models with a Continuous Cache"), for scoring and sampling every token model, whatever its tokens.

A song sings its refrain again, a pop piece plays its chorus again; a model that has not learnt to copy from its
context pays as much for the repeat as for the first time. The cache lets it copy: the next token's distribution
is mixed with one that points back into the sequence so far,

    p(c) = (1 - lambda) p_model(c) + lambda sum_{i < t, x_{i+1} = c} softmax_i(theta h_t . h_i),

where h_i is the net's feature at position i (its input to the output layer) and x_{i+1} the token that followed
it. It is an exact, normalised mixture, so its NLL is a real likelihood, and scoring a sequence at once gives
what sampling it token by token gives. Nothing is trained: theta and lambda are chosen on the validation split
(`bench/cache.py`) and stored in an exported model's decoding defaults.

The cache copies a token at a time, and from a state like the current one: drawing, a character model's states
are alike within a word, so a high lambda stutters ("you you you") before it ever sings a line again. `Refrain`
copies whole segments (a line of lyrics, a bar of events: the tokens up to a separator): at a segment's start,

    p(segment) = (1 - lambda_k) p(segment) + lambda_k q_k(segment),

q_k the earlier segments of the sequence, each weighed 1, or 1 + boost where the segment before it is the one
just finished (a refrain goes on as it went before), and lambda_k `follow` where such a segment exists, else
`start`. What decides lambda_k and q_k is the text so far, so this too is an exact likelihood: a segment's
probability under the net (or the cache) is the product of its tokens', and the mixture replaces it.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from lm_music.errors import UserError

REFRAIN_OPTIONS = ("refrain_start", "refrain_follow", "refrain_boost")
# the keys of sample options, train.yaml and decoding defaults that say how a sample copies itself
OPTIONS = ("cache_lambda", "cache_theta", "cache_window", *REFRAIN_OPTIONS)


@dataclass(frozen=True)
class ContinuousCache:
    lam: float  # the cache's weight in the mixture (0: off)
    theta: float = 0.3  # how sharply it points at the positions whose features match the current one
    window: int | None = None  # the positions it looks back over (None: the whole sequence so far)

    def __post_init__(self) -> None:
        if not 0 <= self.lam < 1:
            raise UserError(f"cache_lambda must be in [0, 1) (0: no cache), got {self.lam}")
        if self.theta < 0:
            raise UserError(f"cache_theta must be >= 0, got {self.theta}")
        if self.window is not None and self.window < 1:
            raise UserError(f"cache_window must be at least 1 position (or null: all), got {self.window}")

    @classmethod
    def from_options(cls, options: Mapping) -> "ContinuousCache | None":
        """The cache that `cache_lambda`, `cache_theta` and `cache_window` describe; None when lambda is unset
        or 0."""
        lam = options.get("cache_lambda")
        if not lam:
            return None
        theta = options.get("cache_theta")
        return cls(float(lam), 0.3 if theta is None else float(theta), options.get("cache_window"))

    def as_options(self) -> dict:
        return {"cache_lambda": self.lam, "cache_theta": self.theta, "cache_window": self.window}

    def weights(
        self, queries: torch.Tensor, keys: torch.Tensor, key_real: torch.Tensor, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cache's attention (B, T, N) from T queries (B, T, H) over N keys (B, N, H), used where `key_real`
        (B, N), and whether each query sees any key (B, T, 1). Query t sits at position `offset + t` of the keys'
        sequence and sees the keys i < offset + t (within the window)."""
        scores = self.theta * torch.bmm(queries.float(), keys.float().transpose(1, 2))
        everything = offset == keys.shape[1] and (self.window is None or offset <= self.window)
        if queries.shape[1] == 1 and everything and bool(key_real.all()):
            # a sampling step that sees every key (the common case, without the masks' cost)
            return scores.softmax(-1), torch.ones_like(scores[..., :1], dtype=torch.bool)
        position = offset + torch.arange(queries.shape[1], device=keys.device)[:, None]
        key_position = torch.arange(keys.shape[1], device=keys.device)[None]
        visible = key_position < position
        if self.window is not None:
            visible &= key_position >= position - self.window
        visible = visible[None] & key_real[:, None, :]
        weights = scores.masked_fill(~visible, float("-inf")).softmax(-1).nan_to_num(0.0)
        return weights, visible.any(-1, keepdim=True)

    def mix(self, model: torch.Tensor, pointed: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """log((1 - lambda) p_model + lambda p_cache) from the model's probabilities and the cache's; the model
        alone where the cache has seen nothing."""
        lam = torch.where(seen, self.lam, 0.0)
        return torch.log((1 - lam) * model + lam * pointed).clamp(min=-1e4)

    def log_probs(
        self,
        logits: torch.Tensor,
        queries: torch.Tensor,
        keys: torch.Tensor,
        key_ids: torch.Tensor,
        offset: int,
    ) -> torch.Tensor:
        """Log-probabilities (B, T, V) of the mixture at T positions (sampling), from the net's `logits`
        (B, T, V) and features `queries` (B, T, H) there, over `keys` (B, N, H): the features of earlier
        positions, each followed by `key_ids` (B, N)."""
        model = logits.float().softmax(-1)
        if keys.shape[1] == 0:
            return model.log()
        weights, seen = self.weights(queries, keys, torch.ones_like(key_ids, dtype=torch.bool), offset)
        index = key_ids.long()[:, None, :].expand(-1, weights.shape[1], -1)
        pointed = torch.zeros_like(model).scatter_add_(-1, index, weights)  # each key's weight on its next id
        return self.mix(model, pointed, seen)

    def sequence_nll(
        self, logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor, pad: int
    ) -> torch.Tensor:
        """NLL in nats (B, T) of each target of whole sequences read at once (scoring), 0 at padding: position
        t's keys are the features of positions i < t, each followed by `targets[:, i]` (padding never a key).
        Queries go in blocks, so that a long piece needs memory for a block's scores, not the whole square; only
        the targets' probabilities are formed, not the vocabulary's."""
        block, parts = 512, []
        model = logits.float().softmax(-1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
        for start in range(0, logits.shape[1], block):
            end = start + block
            keys, key_ids = features[:, :end], targets[:, :end]
            weights, seen = self.weights(features[:, start:end], keys, key_ids != pad, start)
            match = key_ids[:, None, :] == targets[:, start:end, None]
            pointed = (weights * match).sum(-1)
            parts.append(-self.mix(model[:, start:end], pointed, seen[..., 0]))
        return torch.cat(parts, dim=1).masked_fill(targets == pad, 0.0)


Segment = tuple[int, ...]  # a segment's ids, its separator last (the sequence's last one may lack it)


@dataclass(frozen=True)
class Refrain:
    """Whole segments sung again (see the module's docstring); `separator` is the codec's (`codec.separator`)."""

    start: float  # the chance that a segment repeats an earlier one
    follow: float | None = None  # the chance where the segment just finished was heard before, with one after
    # it (None: `start`)
    boost: float = 0.0  # that one's extra weight in q (1 + boost against 1): a refrain goes on as it went

    def __post_init__(self) -> None:
        if self.follow is None:
            object.__setattr__(self, "follow", self.start)
        for name in ("start", "follow"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"refrain_{name} must be in [0, 1) (0: never), got {getattr(self, name)}")
        if self.boost < 0:
            raise UserError(f"refrain_boost must be >= 0, got {self.boost}")

    @classmethod
    def from_options(cls, options: Mapping) -> "Refrain | None":
        """The refrain that `refrain_start`, `refrain_follow` (unset: as `refrain_start`) and `refrain_boost`
        describe; None when `refrain_start` is unset or 0."""
        start, follow = options.get("refrain_start"), options.get("refrain_follow")
        if not start:
            return None
        follow = None if follow is None else float(follow)
        return cls(float(start), follow, float(options.get("refrain_boost") or 0.0))

    def as_options(self) -> dict:
        return {"refrain_start": self.start, "refrain_follow": self.follow, "refrain_boost": self.boost}

    def choices(self, segments: list[Segment], separator: int) -> tuple[float, dict[Segment, float]]:
        """After the finished `segments`: the chance that the next one is a copy, and q, each earlier segment's
        share of that chance (only whole ones, ended by the separator, and not the separator alone)."""
        shares: dict[Segment, float] = {}
        follows = False
        for j, segment in enumerate(segments):
            if len(segment) < 2 or segment[-1] != separator:
                continue
            weight = 1.0
            if j >= 1 and segments[j - 1] == segments[-1]:
                weight, follows = 1.0 + self.boost, True
            shares[segment] = shares.get(segment, 0.0) + weight
        if not shares:
            return 0.0, {}
        total = sum(shares.values())
        return (self.follow if follows else self.start), {s: w / total for s, w in shares.items()}

    def pick(
        self, segments: list[Segment], separator: int, generator: torch.Generator | None
    ) -> Segment | None:
        """A draw of the mixture's first choice: an earlier segment to copy, or None (the net writes it)."""
        lam, shares = self.choices(segments, separator)
        device = generator.device if generator is not None else "cpu"
        if not lam or float(torch.rand((), generator=generator, device=device)) >= lam:
            return None
        chosen = int(torch.multinomial(torch.tensor(list(shares.values())), 1, generator=_cpu(generator)))
        return list(shares)[chosen]

    def sequence_nll(
        self, nll: torch.Tensor, targets: torch.Tensor, pad: int, separator: int
    ) -> torch.Tensor:
        """The NLL (B, T) of whole sequences under the mixture, from the tokens' NLL under the net (or the
        cache): a segment's NLL is the mixture's, and stands on its last token (the others 0), so sums (per
        sequence, per split) are exact."""
        out = torch.zeros_like(nll, dtype=torch.float64)
        for row, (costs, ids) in enumerate(zip(nll.double().tolist(), targets.tolist(), strict=True)):
            segments: list[Segment] = []
            begin = 0
            for t, i in enumerate(ids):
                if i == pad or (i != separator and t + 1 < len(ids) and ids[t + 1] != pad):
                    continue
                segment, cost = tuple(ids[begin : t + 1]), sum(costs[begin : t + 1])
                lam, shares = self.choices(segments, separator)
                if lam:
                    copied = math.log(lam * shares[segment]) if segment in shares else -math.inf
                    cost = -float(np.logaddexp(math.log1p(-lam) - cost, copied))
                out[row, t] = cost
                segments.append(segment)
                begin = t + 1
        return out.to(nll.dtype)


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator drawn from `generator` (multinomial over a short CPU list needs one on the CPU)."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def split_segments(ids: list[int], separator: int) -> tuple[list[Segment], list[int]]:
    """The whole segments of `ids` (each ending with the separator), and the unfinished rest."""
    cuts = [t + 1 for t, i in enumerate(ids) if i == separator]
    finished = [tuple(ids[a:b]) for a, b in zip([0, *cuts], cuts, strict=False)]
    return finished, list(ids[cuts[-1] if cuts else 0 :])


class RefrainDraw:
    """Refrains while drawing a batch a token at a time: per row the finished segments, the open one, and the
    ids of a copied segment still to give (`force` puts them in place of the net's draws)."""

    def __init__(
        self, refrain: Refrain, separator: int, histories: list[list[int]], generator: torch.Generator | None
    ):
        self.refrain, self.separator, self.generator = refrain, separator, generator
        split = [split_segments(history, separator) for history in histories]
        self.segments: list[list[Segment]] = [finished for finished, _ in split]
        self.open: list[list[int]] = [unfinished for _, unfinished in split]
        self.queued: list[list[int]] = [
            self.copy(row) if not self.open[row] else [] for row in range(len(histories))
        ]

    def copy(self, row: int) -> list[int]:
        chosen = self.refrain.pick(self.segments[row], self.separator, self.generator)
        return list(chosen) if chosen else []

    def force(self, ids: torch.Tensor) -> torch.Tensor:
        """The draws `ids` (B,) with each copying row's next copied id in place, the rows' segments updated."""
        ids = ids.clone()
        for row, i in enumerate(ids.tolist()):
            if self.queued[row]:
                i = self.queued[row].pop(0)
                ids[row] = i
            self.open[row].append(i)
            if i == self.separator:
                self.segments[row].append(tuple(self.open[row]))
                self.open[row] = []
                if not self.queued[row]:
                    self.queued[row] = self.copy(row)
        return ids


class CachedNet:
    """A token net's step function (`decoding.generate`'s `step`) that draws from the cache's mixture: it keeps
    the features and ids of every position so far beside the net's own state, and returns log-probabilities
    (valid logits: temperature and nucleus apply to the mixture)."""

    def __init__(self, net: torch.nn.Module, cache: ContinuousCache, labels: torch.Tensor | None = None):
        self.net, self.cache, self.labels = net, cache, labels

    def __call__(self, ids: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        net_state, memory = state if state is not None else (None, None)
        features, net_state = self.net.features(ids, self.labels, net_state)
        logits = self.net.head(features)
        memory = (memory or Memory()).append(features, ids)
        offset = memory.size - ids.shape[1]  # the first new position
        first = max(0, offset - self.cache.window) if self.cache.window else 0  # the earliest key it sees
        keys, key_ids = memory.keys[:, first : memory.size - 1], memory.ids[:, first + 1 : memory.size]
        log_probs = self.cache.log_probs(logits, features, keys, key_ids, offset - first)
        return log_probs, (net_state, memory)


class Memory:
    """The features (B, N, H) and ids (B, N) of every position read so far, in buffers that double as they
    fill, so that sampling n tokens copies O(n) features, not O(n^2)."""

    def __init__(self) -> None:
        self.keys = self.ids = None
        self.size = 0

    def repeat(self, rows: int) -> "Memory":
        """This memory of one sequence as `rows` copies that then grow apart."""
        copy = Memory()
        if self.keys is not None:
            copy.keys, copy.ids = self.keys.repeat(rows, 1, 1), self.ids.repeat(rows, 1)
        copy.size = self.size
        return copy

    def append(self, features: torch.Tensor, ids: torch.Tensor) -> "Memory":
        new = features.shape[1]
        if self.keys is None or self.size + new > self.keys.shape[1]:
            capacity = max(64, 2 * (self.size + new))
            keys = features.new_zeros(features.shape[0], capacity, features.shape[2])
            ids_buffer = ids.new_zeros(ids.shape[0], capacity)
            if self.keys is not None:
                keys[:, : self.size] = self.keys[:, : self.size]
                ids_buffer[:, : self.size] = self.ids[:, : self.size]
            self.keys, self.ids = keys, ids_buffer
        self.keys[:, self.size : self.size + new] = features
        self.ids[:, self.size : self.size + new] = ids
        self.size += new
        return self
