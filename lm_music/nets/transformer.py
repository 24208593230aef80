"""A causal, decoder-only Transformer (as nanoGPT's: pre-LayerNorm blocks, `scaled_dot_product_attention`, a GELU
MLP) under the token and piano-roll nets (`nets.token`, `nets.roll`), whose state is its key/value cache.

Positions are rotary (Su et al. 2021): attention sees only how far apart two positions are, so a model
trained on windows of `context` positions reads and writes sequences of any length. Every position attends to
at most `context` positions, itself included, and which ones depends on its position alone, never on how the
sequence is split into calls:

- the first `context` positions attend to every position before them (exact causal attention);
- past them, positions run in chunks of `context // 2` aligned to the sequence's start, each position
  attending to the positions of its chunk up to itself and to the `context - chunk` positions before the
  chunk, so every prediction has between `context // 2` and `context` positions of history.

So `forward(inputs, state) -> (outputs, state)` as the RNNs: training and scoring read a whole sequence in one
call, sampling (`decoding.generate`) one position a step from the cache, and both give the same conditionals:
the likelihood a test reports is that of the distribution sampling draws from. (A window that slides one
position a step would condition samples on more history than the model was trained and scored with.)
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lm_music.errors import UserError


@dataclass
class KVCache:
    """Keys and values (B, heads, L, head_dim) of the L <= context - 1 positions that the next one attends to,
    per layer, and the number of positions read so far (the rotary position of the next one)."""

    position: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def length(self) -> int:
        return self.layers[0][0].shape[2]

    def carry(self, rows: int) -> "KVCache":
        """The detached cache of the first `rows` sequences (truncated backprop, as `rnn.carry_state`)."""
        layers = [(k[:rows].detach(), v[:rows].detach()) for k, v in self.layers]
        return KVCache(self.position, layers)


def last_positions(layers: list, keep: int) -> list:
    """Each layer's keys and values (B, heads, L, head_dim) of the last `keep` positions at most (None: none
    cached yet)."""
    if layers[0] is None:
        return layers
    return [(k[:, :, max(0, k.shape[2] - keep) :], v[:, :, max(0, v.shape[2] - keep) :]) for k, v in layers]


def rotate(x: torch.Tensor, position: int) -> torch.Tensor:
    """Rotary position embedding of x (B, heads, T, head_dim) for positions position..position+T-1."""
    half = x.shape[-1] // 2
    frequencies = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    steps = torch.arange(position, position + x.shape[2], device=x.device, dtype=torch.float32)
    angles = steps[:, None] * frequencies[None]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, attention_dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, position: int, past: tuple[torch.Tensor, torch.Tensor] | None):
        """x (B, T, C) at positions position.. -> (B, T, C), and the keys and values of past + these."""
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, 2)
        )
        q, k = rotate(q, position), rotate(k, position)
        cached = 0
        if past is not None and past[0].shape[2]:
            cached = past[0].shape[2]
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        mask = None
        if cached and T > 1:  # new position i sees every cached key and the new ones up to itself
            mask = (
                torch.arange(cached + T, device=x.device)[None]
                <= cached + torch.arange(T, device=x.device)[:, None]
            )
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=not cached and T > 1,
        )
        return self.residual_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C))), (k, v)


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout, attention_dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, position: int, past):
        attended, kv = self.attn(self.ln_1(x), position, past)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), kv


class Transformer(nn.Module):
    """Pre-LN blocks over embedded inputs (B, T, d_model) -> features (B, T, d_model), with the cache as state.

    `attention_dropout` (None: `dropout`) drops attention weights in training. Any value above 0 sends
    `scaled_dot_product_attention` on CPU to its unfused kernel: at 1,024 positions a training step is 3-5x
    slower than with 0 (bench/attention_dropout.py), so long-context models train with 0 and keep the other
    dropouts."""

    def __init__(
        self,
        d_model: int,
        n_layer: int,
        n_head: int,
        context: int,
        dropout: float,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("n_layer", n_layer), ("n_head", n_head)):
            if value < 1:
                raise UserError(f"model.{name} must be at least 1, got {value}")
        if d_model % n_head or (d_model // n_head) % 2:
            raise UserError(
                f"model.d_model must be divisible by model.n_head into an even head size (rotary positions), "
                f"got d_model={d_model}, n_head={n_head}"
            )
        if context < 2:
            raise UserError(f"model.context must be at least 2 positions, got {context}")
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        for name, value in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0 <= value < 1:
                raise UserError(f"model.{name} must be in [0, 1), got {value}")
        self.context = context
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, dropout, attention_dropout) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(d_model)

    def init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialisation (as nanoGPT), residual projections scaled down by the depth."""
        n_layer = len(self.blocks)
        for name, p in module.named_parameters():
            if p.dim() < 2:
                continue
            scale = 1 / math.sqrt(2 * n_layer) if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 1
            nn.init.normal_(p, mean=0.0, std=0.02 * scale)

    def first_visible(self, position: int) -> int:
        """The earliest position that `position` attends to: 0 within the first `context` positions; past them,
        positions run in chunks of `context // 2` aligned to the start, each attending to itself and to the
        `context - chunk` positions before the chunk."""
        chunk = max(1, self.context // 2)
        return max(0, position // chunk * chunk - (self.context - chunk))

    def forward(self, x: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """The same conditionals however the positions are split into calls: a whole sequence at once (training,
        scoring) and one position at a time from the cache (sampling) give the same outputs, so the likelihood
        that scoring reports is that of the distribution sampling draws from."""
        x = self.dropout(x)
        position = state.position if state else 0
        past = state.layers if state else [None] * len(self.blocks)
        chunk = max(1, self.context // 2)
        outputs = []
        start, T = 0, x.shape[1]
        while start < T:
            first = self.first_visible(position)
            boundary = (position // chunk + 1) * chunk  # the piece of positions that see from `first`
            while boundary < position + T - start and self.first_visible(boundary) == first:
                boundary += chunk
            end = min(T, start + boundary - position)
            h = x[:, start:end]
            past = last_positions(past, position - first)
            layers = []
            for block, layer_past in zip(self.blocks, past, strict=True):
                h, kv = block(h, position, layer_past)
                layers.append(kv)
            outputs.append(h)
            past, position, start = layers, position + h.shape[1], end
        return self.ln_f(torch.cat(outputs, dim=1)), KVCache(
            position, last_positions(past, position - self.first_visible(position))
        )
