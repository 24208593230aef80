import torch
from torch import nn

from lm_music.models.rnn import State, make_rnn


class CharRNN(nn.Module):
    """Embedding -> LSTM/GRU -> logits over the vocabulary, as the original lyrics notebook.

    With `num_artists` > 0 an artist embedding is concatenated to every character embedding (the original
    conditional notebook).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 512,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        num_artists: int = 0,
        artist_embedding_dim: int = 512,
        weight_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.artist_embedding = nn.Embedding(num_artists, artist_embedding_dim) if num_artists else None
        input_size = embedding_dim + (artist_embedding_dim if num_artists else 0)
        self.rnn = make_rnn(cell, input_size, hidden_size, num_layers, dropout, weight_dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(
        self, ids: torch.Tensor, artists: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """ids (B, T) -> logits (B, T, V) and the RNN state after the last step."""
        x = self.embedding(ids)
        if self.artist_embedding is not None:
            a = self.artist_embedding(artists)[:, None, :].expand(-1, ids.shape[1], -1)
            x = torch.cat([x, a], dim=-1)
        out, state = self.rnn(x, state)
        return self.head(out), state
