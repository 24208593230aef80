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
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from lm_music.errors import UserError

OPTIONS = ("cache_lambda", "cache_theta", "cache_window")  # the keys of sample options, train.yaml, decoding


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
