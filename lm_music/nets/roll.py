"""Piano-roll nets: frames of 88 keys in, features out, an output head (`nets.heads`) over the next frame."""

import torch
from torch import nn

from lm_music.errors import UserError
from lm_music.nets.heads import make_head
from lm_music.nets.rnn import State, carry_state, make_rnn
from lm_music.nets.transformer import KVCache, Transformer


class LearnedStart(nn.Module):
    """A learned input position before a piece's first frame, so that frame 1 gets a distribution too (the
    protocol of Boulanger-Lewandowski et al. 2012, which scores every frame)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(size) * 0.02)

    def prepend(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, 1 + T, C), the start embedding first."""
        return torch.cat([self.embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)


def embed_frames(net: nn.Module, frames: torch.Tensor, start: bool) -> torch.Tensor:
    """`net.input(frames)`, after the learned start when `start` (a UserError for a net without one)."""
    x = net.input(frames)
    if not start:
        return x
    if net.start is None:
        raise UserError("this model has no learned start (model.learned_start=false): give it a first frame")
    return net.start.prepend(x)


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
        nade_hidden: int = 150,
        weight_dropout: float = 0.0,
        learned_start: bool = False,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(num_keys, embedding_dim)
        self.start = LearnedStart(embedding_dim) if learned_start else None
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, weight_dropout)
        self.head = make_head(head, hidden_size, num_keys, nade_hidden)

    def forward(
        self, frames: torch.Tensor, state: State | None = None, start: bool = False
    ) -> tuple[torch.Tensor, State]:
        """frames (B, T, K) 0/1 -> features (B, T, H) that the head turns into the next frame's distribution;
        with `start`, the learned start first: (B, 1 + T, H), the first predicting frame 1."""
        h, state = self.rnn(self.dropout(embed_frames(self, frames, start)), state)
        return self.dropout(h), state

    carry_state = staticmethod(carry_state)  # what truncated backprop carries into the next chunk


class PianoRollTransformer(nn.Module):
    """Frame projection -> Transformer -> an output head over the 88 keys of the next frame (the RNN's heads)."""

    def __init__(
        self,
        num_keys: int = 88,
        d_model: int = 256,
        n_layer: int = 4,
        n_head: int = 4,
        context: int = 256,
        dropout: float = 0.1,
        head: str = "nade",
        nade_hidden: int = 150,
        learned_start: bool = False,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(num_keys, d_model)
        self.start = LearnedStart(d_model) if learned_start else None
        self.transformer = Transformer(d_model, n_layer, n_head, context, dropout, attention_dropout)
        self.transformer.init_weights(self)
        self.head = make_head(head, d_model, num_keys, nade_hidden)

    def forward(
        self, frames: torch.Tensor, state: KVCache | None = None, start: bool = False
    ) -> tuple[torch.Tensor, KVCache]:
        """frames (B, T, K) 0/1 -> features (B, T, d_model) that the head turns into the next frame's
        distribution; with `start`, the learned start first: (B, 1 + T, d_model), the first predicting frame 1."""
        return self.transformer(embed_frames(self, frames, start), state)

    @staticmethod
    def carry_state(state: KVCache, rows: int) -> KVCache:
        return state.carry(rows)
