"""Copying from the training data, measured exactly: for every position of a sequence (a text's characters, a
piece's notes), the longest run from there that occurs verbatim in one training sequence, its *matching
statistic*. One suffix array (numpy prefix doubling) over the training sequences and the ones to check, built
once; lyrics and music judge memorisation with it (the longest copied run, the share of windows copied).
"""

import numpy as np


def _codes(sequence: str | np.ndarray) -> np.ndarray:
    """A text's code points, or a sequence of symbols (ints >= 0) as it is."""
    if isinstance(sequence, str):
        return np.frombuffer(sequence.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
    return np.asarray(sequence, dtype=np.int64)


def _suffix_ranks(s: np.ndarray, longest: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Suffix order of `s` (ids >= 0) by its first `longest` characters, and per doubling level the rank of
    every position's prefix of that level's length (equal ranks: equal prefixes), from `first` characters up.

    The first level packs `first` characters into one integer; each later round doubles the length and
    re-sorts only the groups still tied (text repeats little beyond a few words, choruses aside).
    """
    n = len(s)
    alphabet, ids = np.unique(s, return_inverse=True)
    bits = int(len(alphabet) + 1).bit_length()
    first = 8 if bits <= 7 else 4 if bits <= 15 else 2 if bits <= 31 else 1
    padded = np.zeros(n + first, np.int64)
    padded[:n] = ids + 1  # 0: past the end, smaller than every character
    packed = np.zeros(n, np.int64)
    for t in range(first):
        packed = (packed << bits) | padded[t : t + n]
    order = np.argsort(packed, kind="stable")
    slots = np.arange(n)  # the slots of the suffix order still tied, ascending
    sorted_key = packed[order]
    rank = np.empty(n, np.int64)
    levels = []
    k = first
    while True:
        run_start = np.concatenate([[True], sorted_key[1:] != sorted_key[:-1]])
        # a position's rank: the slot where its group starts (+1: 0 is past the end)
        rank[order[slots]] = np.maximum.accumulate(np.where(run_start, slots, 0)) + 1
        levels.append(rank.astype(np.int32))
        bounds = np.append(np.flatnonzero(run_start), len(slots))
        sizes = np.diff(bounds)
        slots = slots[np.repeat(sizes > 1, sizes)]
        if not len(slots) or k >= longest:
            return order, levels, first
        pos = order[slots]
        ahead = pos + k
        second = np.zeros(len(pos), np.int64)
        second[ahead < n] = rank[ahead[ahead < n]]
        key = rank[pos] * (n + 1) + second
        within = np.argsort(key, kind="stable")
        order[slots] = pos[within]
        sorted_key = key[within]
        k *= 2


def matching_statistics(
    training: list[str] | list[np.ndarray], texts: list[str] | list[np.ndarray]
) -> list[np.ndarray]:
    """For each text, at each position p, the length of the longest prefix of text[p:] that occurs verbatim in
    one of the training songs (a span never crosses from one song into the next). Texts are strings or
    sequences of symbols (ints >= 0: a piece's notes, `music.note_symbols`).

    One suffix array over the training songs and the texts together (`_suffix_ranks`); a text position's
    longest match is with the training suffix nearest it in suffix order, before or after, and that common
    prefix is measured with the doubling levels' ranks (binary lifting), all positions at once.
    """
    if not texts:
        return []
    # Songs end with 0, texts start with 1, characters are code points + 2: a match stops at a song's end
    # or a text's end, and never counts text against text.
    parts, starts, n_train = [], [], 0
    for song in training:
        parts += [_codes(song) + 2, np.zeros(1, np.int64)]
        n_train += len(song) + 1
    position = n_train
    for text in texts:
        parts += [np.ones(1, np.int64), _codes(text) + 2]
        starts.append(position + 1)
        position += len(text) + 1
    s = np.concatenate(parts)
    n = len(s)
    order, levels, first = _suffix_ranks(s, max(len(t) for t in texts))
    is_train = order < n_train
    index = np.arange(n)
    before = np.maximum.accumulate(np.where(is_train, index, -1))
    after = np.minimum.accumulate(np.where(is_train, index, n)[::-1])[::-1]
    q_slot = index[~is_train]
    q_pos = order[q_slot]
    best = np.zeros(len(q_pos), np.int64)
    for neighbour in (before[q_slot], after[q_slot]):
        found = (neighbour >= 0) & (neighbour < n)
        i, j = q_pos[found], order[neighbour[found]]
        length = np.zeros(len(i), np.int64)
        for level in range(len(levels) - 1, -1, -1):  # level r compares first * 2**r characters
            a, b = i + length, j + length
            inside = (a < n) & (b < n)
            same = np.zeros(len(i), bool)
            same[inside] = levels[level][a[inside]] == levels[level][b[inside]]
            length += same * (first << level)
        going = np.ones(len(i), bool)
        for _ in range(first - 1):  # the last few characters, one at a time
            a, b = i + length, j + length
            going &= (a < n) & (b < n)
            going[going] = s[a[going]] == s[b[going]]
            length += going
        best[found] = np.maximum(best[found], length)
    statistic = np.zeros(n, np.int64)
    statistic[q_pos] = best
    return [
        np.minimum(statistic[st : st + len(t)], len(t) - np.arange(len(t))) for st, t in zip(starts, texts)
    ]


def copied(statistic: np.ndarray, window: int) -> dict[str, float]:
    """The longest copied run and the share of `window`-long windows found verbatim, from a sequence's
    matching statistics; the share is NaN for a sequence shorter than a window."""
    windows = statistic[: max(len(statistic) - window + 1, 0)]
    return {
        "longest_copy": float(statistic.max()) if len(statistic) else 0.0,
        "copied_windows": float((windows >= window).mean()) if len(windows) else float("nan"),
    }


def memorisation_table(training: list, named: dict[str, list], window: int) -> dict[str, dict[str, float]]:
    """Per set of sequences (samples, reference, ...), against one index over the training sequences: the
    longest copied run (max and mean over the set) and the mean share of copied `window`-long windows."""
    everything = [s for values in named.values() for s in values]
    rows = [copied(statistic, window) for statistic in matching_statistics(training, everything)]
    table, start = {}, 0
    for name, values in named.items():
        mine, start = rows[start : start + len(values)], start + len(values)
        longest = np.array([r["longest_copy"] for r in mine])
        windows = np.array([r["copied_windows"] for r in mine])
        table[name] = {
            "longest_copy_max": float(longest.max()) if len(longest) else float("nan"),
            "longest_copy_mean": float(longest.mean()) if len(longest) else float("nan"),
            "copied_windows": float(np.nanmean(windows)) if np.isfinite(windows).any() else float("nan"),
        }
    return table
