import torch
import torch.nn.functional as F
from torch import nn

from lm_music.errors import UserError

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class WeightDropped:
    """DropConnect on the hidden-to-hidden weights (AWD-LSTM, Merity et al. 2018): each training forward pass
    runs the fused kernel with a fresh dropout mask on `weight_hh_*`, which regularises the recurrence itself
    (ordinary dropout only touches what goes between layers)."""

    weight_dropout: float = 0.0

    def forward(self, input, hx=None):
        if not (self.training and self.weight_dropout):
            return super().forward(input, hx)
        kept = self._flat_weights
        self._flat_weights = [
            F.dropout(w, self.weight_dropout) if name.startswith("weight_hh") else w
            for name, w in zip(self._flat_weights_names, kept, strict=True)
        ]
        try:
            return super().forward(input, hx)
        finally:
            self._flat_weights = kept


class WeightDroppedLSTM(WeightDropped, nn.LSTM):
    pass


class WeightDroppedGRU(WeightDropped, nn.GRU):
    pass


def make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, weight_dropout: float = 0.0
) -> nn.RNNBase:
    """A batch-first LSTM or GRU; the sizes are checked here because every model builds its RNN here."""
    cells = {"lstm": WeightDroppedLSTM, "gru": WeightDroppedGRU}
    if cell not in cells:
        raise UserError(f"model.cell must be one of {sorted(cells)}, got {cell!r}")
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("input size", input_size)):
        if value < 1:
            raise UserError(f"model.{name} must be at least 1, got {value}")
    for name, value in (("dropout", dropout), ("weight_dropout", weight_dropout)):
        if not 0 <= value < 1:
            raise UserError(f"model.{name} must be in [0, 1), got {value}")
    rnn = cells[cell](
        input_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
    )
    rnn.weight_dropout = weight_dropout
    return rnn


def carry_state(state: State, rows: int) -> State:
    """The detached state of the first `rows` sequences: what truncated backprop carries into the next chunk
    once the shorter sequences of a longest-first batch have ended."""

    def cut(s: torch.Tensor) -> torch.Tensor:
        return s[:, :rows].detach().contiguous()

    return tuple(cut(s) for s in state) if isinstance(state, tuple) else cut(state)
