"""How fast a MIDI folder is read: the piano-roll reader (pretty_midi) against symusic, and MidiTok's tokenizers.

    python bench/midi_ingest.py PATH/pop909 [--repeats 3] [--tokenizers REMI TSD MIDILike]

Per file, three ways, each over every .mid/.midi file of the folder (its subfolders included), in one process:
- `pretty_midi`: `lm_music.midi.midi_to_roll` on the eighth-note grid, what the roll data modules do today;
- `symusic`: `symusic.Score` parsed, resampled to the same grid and made into an 88-key roll (its pianoroll);
- `tokens`: `lm_music.tasks.events.codec.read_score` (symusic, tracks merged) and the codec's `encode`, per tokenizer.
Prints one JSON line: files/s for each (the median over `--repeats` passes), the ratio symusic / pretty_midi,
tokens/s of each tokenizer, and how many files' note counts the two readers disagree on (with one example).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import symusic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.midi import HIGHEST_PITCH, LOWEST_PITCH, midi_to_roll  # noqa: E402
from lm_music.tasks.events.codec import EventCodec, make_tokenizer, read_score  # noqa: E402

FRAMES_PER_BEAT = 2


def pretty_midi_roll(path: Path) -> tuple[np.ndarray, int]:
    roll, stats = midi_to_roll(path, frames_per_beat=FRAMES_PER_BEAT)
    return roll, stats["notes"]


def symusic_roll(path: Path) -> tuple[np.ndarray, int]:
    score = symusic.Score(str(path))
    grid = score.resample(tpq=FRAMES_PER_BEAT, min_dur=1)
    roll, notes = np.zeros((0, HIGHEST_PITCH + 1 - LOWEST_PITCH), dtype=bool), 0
    for track in grid.tracks:
        if track.is_drum or not track.note_num():
            continue
        pitches = track.notes.numpy()["pitch"]
        notes += int(((pitches >= LOWEST_PITCH) & (pitches <= HIGHEST_PITCH)).sum())
        keys = track.pianoroll(modes=["frame"], pitch_range=[LOWEST_PITCH, HIGHEST_PITCH + 1])[0].T > 0
        if len(keys) > len(roll):
            roll = np.pad(roll, ((0, len(keys) - len(roll)), (0, 0)))
        roll[: len(keys)] |= keys
    return roll, notes


def timed(read, files: list[Path], repeats: int) -> tuple[float, list]:
    """Median files/s of `read` over `repeats` passes, and the last pass's results."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = [read(f) for f in files]
        rates.append(len(files) / (time.perf_counter() - start))
    return statistics.median(rates), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokenizers", nargs="+", default=["REMI", "TSD", "MIDILike"])
    args = parser.parse_args()
    files = sorted(f for f in args.folder.rglob("*") if f.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise SystemExit(f"no .mid/.midi files in {args.folder}")

    pm_rate, pm = timed(pretty_midi_roll, files, args.repeats)
    sy_rate, sy = timed(symusic_roll, files, args.repeats)
    differ = [(f.name, a[1], b[1]) for f, a, b in zip(files, pm, sy) if a[1] != b[1]]
    tokens = {}
    for name in args.tokenizers:
        codec = EventCodec.of(make_tokenizer(name))

        def encode(path: Path, codec=codec) -> int:
            return len(codec.encode(read_score(path)))

        rate, counts = timed(encode, files, args.repeats)
        tokens[name] = {"files_per_s": round(rate, 1), "tokens_per_s": round(rate * np.mean(counts))}
    print(
        json.dumps(
            {
                "folder": args.folder.name,
                "files": len(files),
                "pretty_midi_files_per_s": round(pm_rate, 1),
                "symusic_files_per_s": round(sy_rate, 1),
                "symusic_over_pretty_midi": round(sy_rate / pm_rate, 1),
                "note_counts_differ": len(differ),
                "example_difference": differ[0] if differ else None,
                "tokenize": tokens,
                **hardware(),
            }
        )
    )


if __name__ == "__main__":
    main()
