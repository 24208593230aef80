import torch
import torch.nn.functional as F
from torch import nn

from lm_music.errors import UserError
from lm_music.models.rnn import State, make_rnn


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


HEADS = {"bernoulli": BernoulliHead}


class PianoRollRNN(nn.Module):
    """Frame projection -> LSTM/GRU -> an output head over the 88 keys of the next frame."""

    def __init__(
        self,
        num_keys: int = 88,
        embedding_dim: int = 512,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        head: str = "bernoulli",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise UserError(f"model.head must be one of {sorted(HEADS)}, got {head!r}")
        self.input = nn.Linear(num_keys, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout)
        self.head = HEADS[head](hidden_size, num_keys)

    def forward(self, frames: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """frames (B, T, K) 0/1 -> features (B, T, H) that the head turns into the next frame's distribution."""
        h, state = self.rnn(self.dropout(self.input(frames)), state)
        return self.dropout(h), state
