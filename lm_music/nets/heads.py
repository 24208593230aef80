"""The output heads of the piano-roll nets: a distribution over the 88 keys of the next frame, given features
of the RNN or the Transformer (`nets.roll`)."""

import torch
import torch.nn.functional as F
from torch import nn

from lm_music.errors import UserError


class BernoulliHead(nn.Module):
    """The 88 keys of a frame as independent Bernoullis given the RNN state (the original model)."""

    def __init__(self, hidden_size: int, num_keys: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_keys)

    def nll(self, h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each frame (B, T), summed over keys."""
        logits = self.linear(h).float()
        return F.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum(-1)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """The most likely frame, key by key, for frame accuracy."""
        return (self.linear(h) > 0).float()

    def sample(self, h: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        probs = torch.sigmoid(self.linear(h).float() / temperature)
        return torch.bernoulli(probs, generator=generator)


class NADEHead(nn.Module):
    """The keys of a frame modelled jointly, as RNN-NADE (Boulanger-Lewandowski et al. 2012): a NADE over
    the keys, low to high, whose visible and hidden biases come from the RNN state.

    p(v) = prod_k p(v_k | v_<k, h) with p(v_k = 1 | ...) = sigmoid(b_v,k + V_k . sigmoid(b_h + sum_{j<k} v_j W_j)):
    an exact likelihood, computed for all keys at once when the frame is known (training, scoring) and
    drawn key by key when it is not (sampling).
    """

    def __init__(self, hidden_size: int, num_keys: int, nade_hidden: int = 150) -> None:
        super().__init__()
        self.to_visible_bias = nn.Linear(hidden_size, num_keys)
        self.to_hidden_bias = nn.Linear(hidden_size, nade_hidden)
        self.W = nn.Parameter(torch.randn(num_keys, nade_hidden) * 0.01)  # key j -> NADE hidden
        self.V = nn.Parameter(torch.randn(num_keys, nade_hidden) * 0.01)  # NADE hidden -> key k

    def logits(self, h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Logit of every key given the keys below it in `frames` (B, T, K) and the RNN state (B, T, H).

        The NADE's hidden layer only changes at a sounding key, so it is computed once per segment between
        sounding keys (at most polyphony + 1 a frame) instead of once per key: two small matrix products on
        (B, T, S, .) and a gather, not elementwise work on (B, T, 88, nade_hidden). In fp32 under autocast
        too, since this is the likelihood the benchmarks report.
        """
        with torch.autocast(h.device.type, enabled=False):
            visible_bias = self.to_visible_bias(h.float())
            hidden_bias = self.to_hidden_bias(h.float())
            frames = frames.float()
            segment = (torch.cumsum(frames, -1) - frames).long()  # sounding keys below each key
            segments = int(frames.sum(-1).max()) + 1 if frames.numel() else 1
            s = torch.arange(segments, device=frames.device)[:, None]
            # segment s sees the s lowest sounding keys of its frame
            below = frames.unsqueeze(-2) * (segment.unsqueeze(-2) < s)
            hidden = torch.sigmoid(hidden_bias.unsqueeze(-2) + below @ self.W)  # (B, T, S, nade_hidden)
            per_segment = hidden @ self.V.T  # (B, T, S, K): key k's hidden term, were k in segment s
            return visible_bias + per_segment.gather(-2, segment.unsqueeze(-2)).squeeze(-2)

    def nll(self, h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(h, frames), frames, reduction="none").sum(-1)

    def _draw(self, h: torch.Tensor, choose) -> torch.Tensor:
        """Key by key: `choose(logit of key k) -> 0/1` for the whole batch, each key seeing the ones drawn."""
        visible_bias = self.to_visible_bias(h).float()
        acts = self.to_hidden_bias(h).float()
        keys = []
        for k in range(self.W.shape[0]):
            logit = visible_bias[..., k] + (torch.sigmoid(acts) * self.V[k]).sum(-1)
            key = choose(logit)
            acts = acts + key.unsqueeze(-1) * self.W[k]
            keys.append(key)
        return torch.stack(keys, dim=-1)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self._draw(h, lambda logit: (logit > 0).float())

    def sample(self, h: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        return self._draw(
            h, lambda logit: torch.bernoulli(torch.sigmoid(logit / temperature), generator=generator)
        )


HEADS = {"bernoulli": BernoulliHead, "nade": NADEHead}


def make_head(head: str, hidden_size: int, num_keys: int, nade_hidden: int) -> nn.Module:
    """The output head over the next frame's keys, from features of `hidden_size` (the RNN's or Transformer's)."""
    if head not in HEADS:
        raise UserError(f"model.head must be one of {sorted(HEADS)}, got {head!r}")
    if nade_hidden < 1:
        raise UserError(f"model.nade_hidden must be at least 1, got {nade_hidden}")
    return (
        NADEHead(hidden_size, num_keys, nade_hidden)
        if head == "nade"
        else BernoulliHead(hidden_size, num_keys)
    )
