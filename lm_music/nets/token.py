"""Token nets: ids of a vocabulary (characters, MidiTok tokens) in, logits over it out, optionally conditioned
on a label per sequence (a lyrics model's artist)."""

import torch
from torch import nn

from lm_music.nets.rnn import State, make_rnn
from lm_music.nets.transformer import KVCache, Transformer


class TokenRNN(nn.Module):
    """Embedding -> LSTM/GRU -> logits over the vocabulary, as the original lyrics notebook.

    With `num_labels` > 0 a label embedding is concatenated to every token embedding (the original
    conditional notebook's artist).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 512,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        num_labels: int = 0,
        label_embedding_dim: int = 512,
        weight_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.label_embedding = nn.Embedding(num_labels, label_embedding_dim) if num_labels else None
        input_size = embedding_dim + (label_embedding_dim if num_labels else 0)
        self.rnn = make_rnn(cell, input_size, hidden_size, num_layers, dropout, weight_dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def features(
        self, ids: torch.Tensor, labels: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """ids (B, T) -> the top layer's outputs (B, T, hidden), which `head` reads, and the RNN state."""
        x = self.embedding(ids)
        if self.label_embedding is not None:
            a = self.label_embedding(labels)[:, None, :].expand(-1, ids.shape[1], -1)
            x = torch.cat([x, a], dim=-1)
        return self.rnn(x, state)

    def forward(
        self, ids: torch.Tensor, labels: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """ids (B, T) -> logits (B, T, V) and the RNN state after the last step."""
        out, state = self.features(ids, labels, state)
        return self.head(out), state


class TokenTransformer(nn.Module):
    """Tokens -> Transformer -> logits over the vocabulary (output weights tied to the embedding).

    With `num_labels` > 0 a label embedding is added to every position."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        n_layer: int = 4,
        n_head: int = 4,
        context: int = 256,
        dropout: float = 0.1,
        num_labels: int = 0,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.label_embedding = nn.Embedding(num_labels, d_model) if num_labels else None
        self.transformer = Transformer(d_model, n_layer, n_head, context, dropout, attention_dropout)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.transformer.init_weights(self)
        self.head.weight = self.embedding.weight

    def features(
        self, ids: torch.Tensor, labels: torch.Tensor | None = None, state: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """ids (B, T) -> the last block's normalised outputs (B, T, d_model), which `head` reads, and the cache."""
        x = self.embedding(ids)
        if self.label_embedding is not None:
            x = x + self.label_embedding(labels)[:, None, :]
        return self.transformer(x, state)

    def forward(
        self, ids: torch.Tensor, labels: torch.Tensor | None = None, state: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """ids (B, T) -> logits (B, T, V) and the cache after the last position."""
        h, state = self.features(ids, labels, state)
        return self.head(h), state
