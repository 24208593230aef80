"""Features of lyrics, one value per text, and the memorisation index over the training text.

Words are lower-cased runs of letters, digits and apostrophes; lines are the non-empty lines of a text.
Memorisation is measured exactly (`copying.matching_statistics`): for every position of a text, the longest
prefix of the rest that occurs verbatim in the training text, from which the longest copied span and the share
of 50-character windows found verbatim follow. Rhymes are heard, not spelled: CMUdict's pronunciations
(`pronouncing`), the suffix rule for words it does not know.
"""

import functools
import re

import numpy as np

from lm_music.evaluation.copying import copied, matching_statistics

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
    "rhyme_rate": "share of lines whose end rhymes (CMUdict) with one of the two lines before",
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


@functools.lru_cache(maxsize=65536)
def sounded_rhymes(word: str) -> frozenset[str]:
    """The rhyming parts of the word's pronunciations in CMUdict, via `pronouncing` (the phones from the
    last stressed vowel on: night, light -> AY1 T; love -> AH1 V but move -> UW1 V); empty for a word
    CMUdict does not know."""
    import pronouncing

    phones = pronouncing.phones_for_word(word.strip("'"))
    return frozenset(pronouncing.rhyming_part(p) for p in phones)


def rhymes(a: str, b: str) -> bool:
    """Two different words that rhyme by their pronunciation (any of CMUdict's), or, where CMUdict knows
    either not (old spellings, invented words), by the suffix rule. The same word again is repetition, not
    rhyme."""
    if a == b:
        return False
    sounds_a, sounds_b = sounded_rhymes(a), sounded_rhymes(b)
    if sounds_a and sounds_b:
        return bool(sounds_a & sounds_b)
    return rhyme_part(a) == rhyme_part(b)


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


def memorisation(statistic: np.ndarray) -> dict[str, float]:
    """The longest copied span and the share of WINDOW-character windows found verbatim, from a text's
    matching statistics; the share is NaN for a text shorter than a window."""
    return copied(statistic, WINDOW)


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

    from lm_music.tasks.lyrics.vocab import CharVocab

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
