"""Bar infilling with attribute controls: MMM's layout (Ens & Pasquier 2020) over REMI ids.

A piece's bars `first..last` are cut out, each left as one `Infill_Bar` mark, and asked for after the piece:

    [bars before] Infill_Bar x k [bars after] FillBar_Start [the k bars] FillBar_End

so a left-to-right model writes them seeing the music on both sides. Each bar may carry MidiTok's bar
attribute controls (note density, onset polyphony) right after its Bar token; in training each is kept at a
rate drawn per example, so one model writes freely, obeys the controls it is given, and still continues a
piece (a share of the training windows stays plain continuation). In sampling, `BarControl` gives the
requested controls after each new Bar token and ends the fill after k bars; `splice` puts the new notes into
the file, every note outside the gap as it was. This module knows nothing of Lightning or of files.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lm_music.errors import UserError

CONTEXT_BEFORE = 256  # tokens of whole bars before the gap that the model reads
CONTEXT_AFTER = 128  # and after it (the fill must still see the bars before: the Transformer reads 512)
MAX_FILL = 256  # tokens a training gap may hold (whole bars)


@dataclass(frozen=True)
class Gap:
    """Bars `first..last` (0-based, both included) of a piece."""

    first: int
    last: int

    @property
    def bars(self) -> int:
        return self.last - self.first + 1

    @classmethod
    def parse(cls, text) -> "Gap":
        """`infill_bars=5-8` (bars as a musician counts them, from 1; `7` alone is one bar)."""
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", str(text))
        if not match or int(match[1]) < 1 or int(match[2] or match[1]) < int(match[1]):
            raise UserError(
                f"infill_bars must be FIRST-LAST with 1 <= FIRST <= LAST (e.g. 5-8), got {text!r}"
            )
        return cls(int(match[1]) - 1, int(match[2] or match[1]) - 1)

    def __str__(self) -> str:
        return f"{self.first + 1}-{self.last + 1}"


def bar_starts(ids: np.ndarray, bar_id: int) -> np.ndarray:
    """Where each bar begins in `ids` (the index of its Bar token)."""
    return np.flatnonzero(np.asarray(ids) == bar_id)


def layout(ids: np.ndarray, starts: np.ndarray, gap: Gap, marks: tuple[int, int, int]):
    """(prime, target) of the infilling layout: the whole bars before the gap that fit in CONTEXT_BEFORE
    tokens (the start id too when they reach it), one mark per cut bar, the bars after it that fit in
    CONTEXT_AFTER (the rest of the piece when it fits), FillBar_Start; the gap's own ids are the target."""
    infill, fill_start, _ = marks
    end = len(ids)
    begin, stop = starts[gap.first], starts[gap.last + 1] if gap.last + 1 < len(starts) else end
    fits_before = starts[(starts >= begin - CONTEXT_BEFORE) & (starts <= begin)]
    context_from = fits_before[0] if len(fits_before) else begin
    if starts[0] == context_from and starts[0] > 0:  # from the piece's first bar: what comes before it too
        context_from = 0
    after = starts[(starts > stop) & (starts <= stop + CONTEXT_AFTER)]
    context_to = end if end - stop <= CONTEXT_AFTER else after[-1] if len(after) else stop
    prime = np.concatenate([ids[context_from:begin], [infill] * gap.bars, ids[stop:context_to], [fill_start]])
    return prime.astype(np.int32), np.asarray(ids[begin:stop], dtype=np.int32)


def training_examples(
    windows: Sequence[np.ndarray],
    codec,
    share: float,
    max_bars: int,
    seed: int,
) -> list[np.ndarray]:
    """Each training window as it goes to the model: its control tokens kept at a rate drawn for the window
    (from none to all, as MidiTok's `ac_*_random_ratio_range`), and with probability `share` laid out for
    infilling a random gap of 1 to `max_bars` whole bars (at most MAX_FILL tokens). Seeded: the same
    examples each epoch and after a resume."""
    rng = np.random.default_rng(seed)
    controls = np.array(sorted(codec.control_ids), dtype=np.int64)
    marks = (codec.INFILL, codec.FILL_START, codec.FILL_END)
    examples = []
    for window in windows:
        window = np.asarray(window)
        if len(controls):
            keep = rng.random(len(window)) < rng.random()
            window = window[~np.isin(window, controls) | keep]
        starts = bar_starts(window, codec.BAR)
        complete = len(starts) - 1  # the last bar may be cut by the window's end
        if codec.infilling and complete >= 1 and rng.random() < share:
            bars = int(rng.integers(1, min(max_bars, complete) + 1))
            first = int(rng.integers(0, complete - bars + 1))
            while bars > 1 and starts[first + bars] - starts[first] > MAX_FILL:
                bars -= 1
            if starts[first + bars] - starts[first] <= MAX_FILL:
                prime, target = layout(window, starts, Gap(first, first + bars - 1), marks)
                window = np.concatenate([prime, target, [codec.FILL_END]])
        examples.append(window.astype(np.int32))
    return examples


def control_ids(codec, controls: dict, bars: int, exact: bool = True) -> list[list[int]]:
    """The ids to give after each of `bars` new Bar tokens: `controls` maps a control's name (`codec.CONTROLS`)
    to one value for every bar or a list of one per bar (`exact`: as many as `bars`; else the first bars, the
    others free). note_density: notes in the bar (0-18, 18 meaning 18 or more); polyphony: notes struck
    together at each onset, N or MIN-MAX (1-6). One line for anything else."""
    given = {k: v for k, v in (controls or {}).items() if v is not None}
    if given and not codec.controls:
        raise UserError("this model was trained without attribute controls: leave controls.* out")
    vocab = codec.tokenizer.vocab
    per_bar: list[list[str]] = [[] for _ in range(bars)]
    for name, value in given.items():
        if name not in codec.controls:
            known = ", ".join(codec.controls)
            raise UserError(f"controls.{name}: not a control of this model (it knows {known})")
        values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * bars
        if len(values) != bars:
            raise UserError(
                f"controls.{name} gives {len(values)} values for {bars} bars: give one, or one per bar"
            )
        for bar, v in zip(per_bar, values):
            if v is not None:  # a list may leave a bar free
                bar.extend(_control_tokens(name, v))
    order = [t for ac in codec.tokenizer.attribute_controls for t in ac.tokens]
    for tokens in per_bar:
        missing = [t for t in tokens if t not in vocab]
        if missing:
            raise UserError(f"controls: {missing[0]} is outside the model's range ({_range_hint(order)})")
    return [[vocab[t] for t in sorted(tokens, key=order.index)] for tokens in per_bar]


def _control_tokens(name: str, value) -> list[str]:
    text = str(value).strip()
    if name == "note_density":
        if not text.isdigit():
            raise UserError(f"controls.note_density must be a whole number of notes (0-18), got {value!r}")
        return [f"ACBarNoteDensity_{min(int(text), 18)}{'+' if int(text) >= 18 else ''}"]
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if not match or int(match[2] or match[1]) < int(match[1]):
        raise UserError(f"controls.polyphony must be N or MIN-MAX (notes at once, 1-6), got {value!r}")
    return [f"ACBarOnsetPolyphonyMin_{match[1]}", f"ACBarOnsetPolyphonyMax_{match[2] or match[1]}"]


def _range_hint(order: list[str]) -> str:
    kinds: dict[str, list[str]] = {}
    for token in order:
        kind, _, value = token.partition("_")
        kinds.setdefault(kind.removeprefix("AC"), []).append(value)
    return "; ".join(f"{kind} {values[0]}-{values[-1]}" for kind, values in kinds.items())


class BarControl:
    """The processor (`TokenSampler.draw_ids`) that gives each row the user's controls after its Bar tokens:
    `controls[k]` after its k-th (bars past the list are free), and no control the row would draw itself.
    With `gap` (infilling a gap of that many bars) it also keeps the fill to the gap: the row first draws a
    Bar, may not end before it has begun `gap` bars, and is ended (the end id forced) once it draws a further
    Bar, FillBar_End or the end. `inner` (the grammar mask) masks first."""

    def __init__(
        self, codec, controls: list[list[int]], batch: int, inner=None, gap: int | None = None
    ) -> None:
        self.codec, self.controls, self.inner, self.gap = codec, controls, inner, gap
        self.begun = [0] * batch
        self.pending: list[list[int]] = [[] for _ in range(batch)]
        self.done = [False] * batch
        self.control_ids = sorted(codec.control_ids)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        logits = self.inner.mask(logits) if self.inner is not None else logits.clone()
        codec, filling = self.codec, self.gap is not None
        for row in range(len(self.done)):
            forced = (
                codec.EOS
                if self.done[row]
                else self.pending[row][0]
                if self.pending[row]
                else codec.BAR
                if filling and self.begun[row] == 0
                else None
            )
            if forced is not None:
                logits[row] = -math.inf
                logits[row, forced] = 0.0
                continue
            logits[row, self.control_ids] = -math.inf
            if filling and self.begun[row] < self.gap:
                logits[row, [codec.EOS, codec.FILL_END]] = -math.inf
        return logits

    def update(self, ids: torch.Tensor) -> None:
        if self.inner is not None:
            self.inner.update(ids)
        codec, filling = self.codec, self.gap is not None
        for row, i in enumerate(ids.tolist()):
            if self.done[row]:
                continue
            if self.pending[row] and i == self.pending[row][0]:
                self.pending[row].pop(0)
            elif i == codec.BAR and not (filling and self.begun[row] == self.gap):
                k = self.begun[row]
                self.pending[row] = list(self.controls[k]) if k < len(self.controls) else []
                self.begun[row] += 1
            elif filling and i in (codec.BAR, codec.FILL_END, codec.EOS):
                self.done[row] = True

    def finished(self) -> bool:
        """A fill: every row has ended, nothing more to draw (a continuation ends at its end id)."""
        return self.gap is not None and all(self.done)


def fill_of(drawn: Sequence[int], codec, bars: int) -> list[int]:
    """The ids of a drawn fill: up to its end (FillBar_End, the end id, or a Bar past the gap's last)."""
    fill, begun = [], 0
    for i in drawn:
        if i in (codec.FILL_END, codec.EOS) or (i == codec.BAR and begun == bars):
            break
        begun += i == codec.BAR
        fill.append(int(i))
    return fill


def bar_ticks(score, bars: int) -> list[int]:
    """The tick where each of the score's first `bars` + 1 bars begins, by its own time signatures (4/4
    where it has none), past its end where asked."""
    signatures = sorted(score.time_signatures, key=lambda s: s.time) or []
    changes = [(s.time, score.ticks_per_quarter * 4 * s.numerator // s.denominator) for s in signatures]
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, score.ticks_per_quarter * 4))
    starts, tick, k = [], 0, 0
    while len(starts) <= bars:
        while k + 1 < len(changes) and changes[k + 1][0] <= tick:
            k += 1
        starts.append(tick)
        tick += changes[k][1]
    return starts


def grid_step(score, tokenizer) -> float:
    """The ticks of `score` between two onsets the tokenizer tells apart: MidiTok resamples a score to
    `max_num_pos_per_beat` positions a beat of its largest time-signature denominator before tokenizing."""
    denominators = [s.denominator for s in score.time_signatures] or [4]
    return score.ticks_per_quarter / int(tokenizer.config.max_num_pos_per_beat * max(4, *denominators) / 4)


def in_gap(time: int, begin: int, end: int, step: float) -> bool:
    """Whether an onset falls in ticks [begin, end) once on the tokenizer's grid (rounded half up, as symusic
    resamples): the bar the model saw it in. POP909's notes often sound a tick before the beat; by their raw
    ticks such a downbeat would belong to the bar before."""
    return begin <= math.floor(time / step + 0.5) * step < end


def splice(original, fill, begin: int, end: int, step: float = 1.0):
    """`original` (a symusic Score, its tracks as in the file) with the notes and pedals that start in ticks
    [begin, end) (`in_gap`, on a grid of `step` ticks) taken out and `fill`'s notes and pedals (a Score from
    the gap's own start) put there, on a track of their own; everything else is the file's, untouched."""
    import symusic

    out = original.copy()
    for track in out.tracks:
        track.notes = [n for n in track.notes if not in_gap(n.time, begin, end, step)]
        track.pedals = [p for p in track.pedals if not in_gap(p.time, begin, end, step)]
    if fill.ticks_per_quarter != original.ticks_per_quarter:
        fill = fill.resample(tpq=original.ticks_per_quarter)
    new = symusic.Track("Infilled (lm_music)", 0)
    for track in fill.tracks:
        new.notes.extend(n for n in track.notes if n.time < end - begin)
        new.pedals.extend(p for p in track.pedals if p.time < end - begin)
    new = new.shift_time(begin)
    new.sort()
    out.tracks.append(new)
    return out


def bar_measures(codec, ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(notes, least and most notes struck together at an onset) of each bar of `ids` (from a Bar token),
    measured on the decoded notes as MidiTok computes its controls (notes capped at 18, polyphony kept to
    1-6; an empty bar is (0, 0, 0)): what a control asked for is checked against."""
    ids = np.asarray(ids)
    starts = list(bar_starts(ids, codec.BAR)) + [len(ids)]
    measures = []
    for begin, end in zip(starts, starts[1:]):
        score, _ = codec.decode(ids[begin:end])
        onsets = np.concatenate([t.notes.numpy()["time"] for t in score.tracks] or [np.zeros(0)])
        if not len(onsets):
            measures.append((0, 0, 0))
            continue
        _, counts = np.unique(onsets, return_counts=True)
        measures.append((min(len(onsets), 18), int(min(max(counts.min(), 1), 6)), int(min(counts.max(), 6))))
    return measures


def seconds_at(score, ticks: Sequence[int]) -> list[float]:
    """Where ascending `ticks` fall in seconds, by the score's tempo map (symusic converts notes, not ticks)."""
    import symusic

    probe = symusic.Score(score.ticks_per_quarter)
    probe.tempos = score.tempos.copy()
    track = symusic.Track("probe", 0)
    track.notes = [symusic.Note(int(t), 1, 60, 1) for t in ticks]
    probe.tracks.append(track)
    return [float(n.time) for n in probe.to("second").tracks[0].notes]


def excerpt(score, begin: int, end: int):
    """Ticks [begin, end) of a score from 0: the notes and pedals that start there, held no further than
    `end` (a note of the file held for half a minute would make the excerpt's audio that long)."""
    cut = score.clip(begin, end).shift_time(-begin)
    for track in cut.tracks:
        for note in track.notes:
            note.duration = min(note.duration, end - begin - note.time)
        for pedal in track.pedals:
            pedal.duration = min(pedal.duration, end - begin - pedal.time)
    return cut
