"""Batched step-by-step generation: the prefix is read once, then the RNN state is carried one step at a time."""

import contextlib
import warnings
from collections.abc import Callable

import torch

from lm_music.cache import Memory
from lm_music.nets.transformer import KVCache

StepFn = Callable[[torch.Tensor, object], tuple[torch.Tensor, object]]


@torch.inference_mode()
def generate(
    step: StepFn,
    prime: torch.Tensor,
    length: int,
    draw: Callable[[torch.Tensor], torch.Tensor],
    finished: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Run `step` over the prime (B, P, ...), then draw `length` more steps, feeding each draw back.

    `step(inputs (B, T, ...), state) -> (logits (B, T, ...), state)`; `draw(logits (B, ...)) -> (B, ...)`.
    Returns the drawn steps (B, up to length, ...), without the prime: fewer once `finished()` says every
    row has ended.

    oneDNN is switched off on the CPU here: its LSTM pays a fixed cost of several milliseconds a call, which
    is nearly all of a one-step call's time (bench/sampling.py). Training keeps it: there it is the fast path.
    """
    with one_step_calls(prime.device):
        logits, state = step(prime, None)
        drawn = []
        for i in range(length):
            token = draw(logits[:, -1])
            drawn.append(token)
            if finished is not None and finished():
                break
            if i + 1 < length:
                logits, state = step(token[:, None], state)
    return torch.stack(drawn, dim=1)


@contextlib.contextmanager
def one_step_calls(device: torch.device):
    """oneDNN off on the CPU while a net is called one step at a time (see `generate`)."""
    with warnings.catch_warnings():
        # flags() warns that oneDNN's TF32 needs an Intel GPU: true, and nothing a user can act on.
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=device.type != "cpu"):
            yield


def repeat_rows(state, rows: int):
    """A one-sequence state (an RNN's (h, c) or h, a Transformer's `KVCache`, the continuous cache's `Memory`, or
    a tuple of them) as `rows` identical sequences, each free to go its own way: drawing candidates from one
    point of a sample."""
    if state is None:
        return None
    if isinstance(state, KVCache):
        return KVCache(
            state.position, [(k.repeat(rows, 1, 1, 1), v.repeat(rows, 1, 1, 1)) for k, v in state.layers]
        )
    if isinstance(state, Memory):
        return state.repeat(rows)
    if isinstance(state, torch.Tensor):  # an RNN's (layers, batch, hidden)
        return state.repeat(1, rows, 1)
    return tuple(repeat_rows(part, rows) for part in state)


def categorical_draw(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Draw one id per row from softmax(logits / temperature), optionally kept to the top k or nucleus p."""

    def draw(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float() / temperature
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p is not None and top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)

    return draw
