import torch
from torch import nn

from lm_music.errors import UserError

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.RNNBase:
    """A batch-first LSTM or GRU; the sizes are checked here because every model builds its RNN here."""
    cells = {"lstm": nn.LSTM, "gru": nn.GRU}
    if cell not in cells:
        raise UserError(f"model.cell must be one of {sorted(cells)}, got {cell!r}")
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("input size", input_size)):
        if value < 1:
            raise UserError(f"model.{name} must be at least 1, got {value}")
    if not 0 <= dropout < 1:
        raise UserError(f"model.dropout must be in [0, 1), got {dropout}")
    return cells[cell](
        input_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
    )


def carry_state(state: State, rows: int) -> State:
    """The detached state of the first `rows` sequences: what truncated backprop carries into the next chunk
    once the shorter sequences of a longest-first batch have ended."""

    def cut(s: torch.Tensor) -> torch.Tensor:
        return s[:, :rows].detach().contiguous()

    return tuple(cut(s) for s in state) if isinstance(state, tuple) else cut(state)
