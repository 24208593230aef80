"""Features of lyrics, one value per text, and the memorisation index over the training text.

Words are lower-cased runs of letters, digits and apostrophes; lines are the non-empty lines of a text.
Memorisation is measured exactly with a suffix array (numpy prefix doubling) over the training songs and the
texts to check, built once: for every position of a text, the longest prefix of the rest that occurs
verbatim in the training text (its matching statistic), from which the longest copied span and the share of
50-character windows found verbatim follow.
"""

import re

import numpy as np

WORD = re.compile(r"[\w']+")
VOWELS = "aeiouy"
WINDOW = 50  # characters: a window found verbatim in the training text counts as copied

FEATURES = (
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "repeated_lines",
    "words_per_line",
    "rhyme_rate",
    "new_words",
    "longest_copy",
    "copied_windows",
)
DESCRIPTIONS = {
    "distinct_1": "distinct words / words",
    "distinct_2": "distinct word pairs / word pairs",
    "distinct_3": "distinct word triples / word triples",
    "repeated_lines": "share of lines that repeat an earlier line of the text",
    "words_per_line": "mean words per line",
    "rhyme_rate": "share of lines whose end rhymes with one of the two lines before",
    "new_words": "share of words that never occur in the training text",
    "longest_copy": "longest span copied verbatim from the training text, characters",
    "copied_windows": f"share of {WINDOW}-character windows found verbatim in the training text",
}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def lines(text: str) -> list[str]:
    """The non-empty lines, stripped and lower-cased."""
    return [line.strip().lower() for line in text.splitlines() if line.strip()]


def distinct_n(tokens: list[str], n: int) -> float:
    """Distinct n-grams over n-grams (Li et al. 2016's distinct-n, per text); NaN with no n-gram."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_line_rate(text_lines: list[str]) -> float:
    """Share of lines equal to an earlier line of the same text (a chorus sung again counts)."""
    if not text_lines:
        return float("nan")
    seen, repeated = set(), 0
    for line in text_lines:
        repeated += line in seen
        seen.add(line)
    return repeated / len(text_lines)


def rhyme_part(word: str) -> str:
    """The suffix rule: a final silent e dropped (after a consonant), then the word from its last vowel group
    on: night -> ight, light -> ight, love -> ov, above -> ov, me -> e."""
    word = word.lower().strip("'")
    if len(word) > 2 and word.endswith("e") and word[-2] not in VOWELS:
        stem = word[:-1]
        if any(c in VOWELS for c in stem):
            word = stem
    i = len(word)
    while i > 0 and word[i - 1] not in VOWELS:
        i -= 1
    if i == 0:
        return word
    while i > 0 and word[i - 1] in VOWELS:
        i -= 1
    return word[i:]


def rhymes(a: str, b: str) -> bool:
    """Two different words with the same rhyme part (the same word again is repetition, not rhyme)."""
    return a != b and rhyme_part(a) == rhyme_part(b)


def rhyme_rate(text_lines: list[str]) -> float:
    """Share of lines, from the second, whose last word rhymes with the last word of one of the two lines
    before it (AABB and ABAB both count); NaN for a text of fewer than two lines with words."""
    ends = [w[-1] for w in map(words, text_lines) if w]
    if len(ends) < 2:
        return float("nan")
    hits = sum(any(rhymes(ends[i], ends[j]) for j in range(max(0, i - 2), i)) for i in range(1, len(ends)))
    return hits / (len(ends) - 1)


def text_features(text: str, vocabulary: set[str]) -> dict[str, float]:
    """The word and line features of one text (the memorisation ones come from `MemorisationIndex`)."""
    tokens, text_lines = words(text), lines(text)
    return {
        "distinct_1": distinct_n(tokens, 1),
        "distinct_2": distinct_n(tokens, 2),
        "distinct_3": distinct_n(tokens, 3),
        "repeated_lines": repeated_line_rate(text_lines),
        "words_per_line": float(np.mean([len(words(line)) for line in text_lines])) if text_lines else np.nan,
        "rhyme_rate": rhyme_rate(text_lines),
        "new_words": float(np.mean([t not in vocabulary for t in tokens])) if tokens else float("nan"),
    }


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


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


def matching_statistics(training: list[str], texts: list[str]) -> list[np.ndarray]:
    """For each text, at each position p, the length of the longest prefix of text[p:] that occurs verbatim in
    one of the training songs (a span never crosses from one song into the next).

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


def memorisation(statistic: np.ndarray) -> dict[str, float]:
    """The longest copied span and the share of WINDOW-character windows found verbatim, from a text's
    matching statistics; the share is NaN for a text shorter than a window."""
    windows = statistic[: max(len(statistic) - WINDOW + 1, 0)]
    return {
        "longest_copy": float(statistic.max()) if len(statistic) else 0.0,
        "copied_windows": float((windows >= WINDOW).mean()) if len(windows) else float("nan"),
    }


def set_features(texts: list[str], training: list[str], vocabulary: set[str] | None = None) -> dict:
    """Each feature over a set of texts: name -> (texts,) values; `training` is the training split's songs."""
    vocabulary = vocabulary if vocabulary is not None else training_vocabulary(training)
    rows = [text_features(t, vocabulary) for t in texts]
    for row, statistic in zip(rows, matching_statistics(training, texts)):
        row.update(memorisation(statistic))
    return {name: np.array([row[name] for row in rows], dtype=float) for name in FEATURES}


def training_vocabulary(training: list[str]) -> set[str]:
    return {w for song in training for w in words(song)}


def char_frequencies(training: list[str]) -> tuple[list[str], np.ndarray]:
    """The training text's characters and their unigram frequencies: the floor's model."""
    joined = "".join(training)
    chars, counts = np.unique(list(joined), return_counts=True)
    return list(chars), counts / counts.sum()


def floor_texts(chars: list[str], frequencies: np.ndarray, lengths: list[int], seed: int) -> list[str]:
    """Texts of characters drawn independently with the training text's unigram frequencies."""
    rng = np.random.default_rng(seed)
    table = np.array(chars)
    return ["".join(table[rng.choice(len(chars), size=n, p=frequencies)]) for n in lengths]


def artist_scores(sampler, texts: list[str], batch_size: int = 16) -> np.ndarray:
    """NLL in nats of each text under each of a conditional sampler's artists (texts, artists), scored with
    its own network: the artist under which a text is most likely is the model's guess of who wrote it."""
    import torch
    import torch.nn.functional as F

    from lm_music.vocab import CharVocab

    scores = np.zeros((len(texts), len(sampler.artists)))
    encoded = [sampler.vocab.encode(t, bos=True, eos=True) for t in texts]
    with torch.no_grad():
        for lo in range(0, len(texts), batch_size):
            chunk = encoded[lo : lo + batch_size]
            ids = torch.full((len(chunk), max(map(len, chunk))), CharVocab.PAD, dtype=torch.long)
            for row, e in enumerate(chunk):
                ids[row, : len(e)] = torch.from_numpy(e.astype(np.int64))
            ids = ids.to(sampler.device)
            for artist in range(len(sampler.artists)):
                labels = torch.full((len(chunk),), artist, dtype=torch.long, device=sampler.device)
                logits, _ = sampler.net(ids[:, :-1], labels)
                nll = F.cross_entropy(
                    logits.transpose(1, 2).float(), ids[:, 1:], ignore_index=CharVocab.PAD, reduction="none"
                )
                scores[lo : lo + len(chunk), artist] = nll.sum(1).cpu().numpy()
    return scores


def artist_identification(sampler, texts: list[str], asked: list[str]) -> dict:
    """Per text the artist the model's likelihood picks against the one asked for, and the share matched."""
    picked = [sampler.artists[i] for i in artist_scores(sampler, texts).argmin(1)]
    return {
        "asked": list(asked),
        "picked": picked,
        "match_rate": float(np.mean([a == p for a, p in zip(asked, picked)])) if texts else float("nan"),
        "chance": 1 / len(sampler.artists),
    }


def identification_accuracy(sampler, texts: list[str], true_artists: list[str]) -> dict:
    """How often the artist under which a real song is most likely is its own (top 1), or among the three
    likeliest (top 3), against chance and against always naming the most common artist of these songs."""
    ranked = artist_scores(sampler, texts).argsort(1)
    truth = np.array([sampler.artists.index(a) for a in true_artists])
    n = len(sampler.artists)
    most_common = max(true_artists.count(a) for a in set(true_artists))
    return {
        "songs": len(texts),
        "artists": n,
        "top1": float(np.mean(ranked[:, 0] == truth)),
        "top3": float(np.mean((ranked[:, :3] == truth[:, None]).any(1))),
        "chance_top1": 1 / n,
        "chance_top3": min(3, n) / n,
        "most_common_top1": most_common / len(texts),
    }
