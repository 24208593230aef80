"""The character vocabulary of a lyrics model: it travels in the checkpoint, and sampling needs nothing else
of the data side (so this module imports neither pandas nor Lightning)."""

from collections import Counter
from collections.abc import Sequence

import numpy as np


class CharVocab:
    """Characters of the training split, after four special ids: padding, unknown, start and end of song."""

    PAD, UNK, BOS, EOS = 0, 1, 2, 3
    NUM_SPECIAL = 4

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        self._order = np.argsort(self._codepoints)
        # what ends a segment a refrain repeats (`lm_music.cache.Refrain`): a line
        self.separator = int(self.encode("\n")[0]) if "\n" in chars else None

    @classmethod
    def build(cls, texts: Sequence[str]) -> "CharVocab":
        counts = Counter()
        for text in texts:
            counts.update(text)
        return cls("".join(sorted(counts)))

    def __len__(self) -> int:
        return self.NUM_SPECIAL + len(self.chars)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> np.ndarray:
        """Ids of the characters; a character the vocabulary lacks becomes UNK."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        sorted_codes = self._codepoints[self._order]
        pos = np.searchsorted(sorted_codes, codes).clip(0, max(len(sorted_codes) - 1, 0))
        found = sorted_codes[pos] == codes if len(sorted_codes) else np.zeros(len(codes), dtype=bool)
        ids = np.where(found, self._order[pos] + self.NUM_SPECIAL, self.UNK).astype(np.int32)
        parts = [[self.BOS]] * bos + [ids] + [[self.EOS]] * eos
        return np.concatenate(parts).astype(np.int32) if len(parts) > 1 else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; UNK shows as U+FFFD, the other special ids are left out."""
        out = []
        for i in ids:
            i = int(i)
            if i >= self.NUM_SPECIAL:
                out.append(self.chars[i - self.NUM_SPECIAL])
            elif i == self.UNK:
                out.append("\ufffd")
        return "".join(out)
