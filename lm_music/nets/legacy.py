"""Weights written before the nets were renamed, read by today's nets: a shipped model or a checkpoint of the
old layout loads unchanged."""

import torch

# TokenRNN / TokenTransformer (`artist_embedding`) became TokenRNN / TokenTransformer (`label_embedding`).
RENAMED = {"artist_embedding.": "label_embedding."}


def upgrade_weights(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """`state_dict` with the old layout's key names (after `prefix`, e.g. "net.") renamed to today's."""
    upgraded = {}
    for key, value in state_dict.items():
        for old, new in RENAMED.items():
            if key.startswith(prefix + old):
                key = prefix + new + key[len(prefix + old) :]
        upgraded[key] = value
    return upgraded
