"""The note format of the MIREX 2025 symbolic piano continuation task, as event-token models read and write it.

A prompt is `{"prompt": [{"start": 16, "pitch": 72, "duration": 6}, ...]}`: a pickup bar and 4 bars of 4/4,
onsets and durations in sixteenth notes (starts 0-79, the pickup 0-15). A continuation is
`{"generation": [...]}`: 12 bars more, starts 80-271, a note ending past 272 cut there. The format has no
velocity or tempo: a prompt is read at one velocity and 120 beats a minute.
"""

import json
from pathlib import Path

from lm_music.errors import UserError
from lm_music.io import write_text_atomic

PROMPT_END = 80  # sixteenths: the pickup bar and 4 bars of 4/4
PIECE_END = 272  # sixteenths: 17 bars, the prompt's 5 and the 12 continued
KEYS = ("start", "pitch", "duration")


def read_prompt(path: str | Path, velocity: int = 80):
    """A prompt file as a symusic Score (one piano track, ticks of a sixteenth, 4/4 at 120 bpm); a malformed
    file is one line naming what is wrong."""
    import symusic

    path = Path(path)
    if not path.is_file():
        raise UserError(f"prime_json not found: {path}")
    try:
        notes = json.loads(path.read_text())["prompt"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not JSON ({error}): give a MIREX prompt file") from None
    except (KeyError, TypeError):
        raise UserError(
            f'{path} has no "prompt" list of notes: {{"prompt": [{{"start": ..}}, ..]}}'
        ) from None
    if not isinstance(notes, list) or not notes:
        raise UserError(f'{path}: "prompt" must be a non-empty list of notes')
    track = symusic.Track("Piano", 0)
    for i, note in enumerate(notes):
        if not isinstance(note, dict) or any(not isinstance(note.get(k), int) for k in KEYS):
            raise UserError(f"{path}: note {i} must have integer start, pitch and duration, got {note!r}")
        start, pitch, duration = (note[k] for k in KEYS)
        if not 0 <= start < PROMPT_END or not 0 <= pitch <= 127 or duration < 1:
            raise UserError(
                f"{path}: note {i} {note} is outside the prompt (start 0-{PROMPT_END - 1}, pitch 0-127, "
                "duration >= 1 sixteenths)"
            )
        track.notes.append(symusic.Note(start, duration, pitch, velocity))
    score = symusic.Score(4)  # 4 ticks a quarter: a tick is a sixteenth
    score.tracks.append(track)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.tempos.append(symusic.Tempo(0, 120.0))
    return score


def notes_in(score, start: int = PROMPT_END, end: int = PIECE_END) -> list[dict]:
    """The score's notes that start in [start, end) sixteenths, sorted, durations cut at `end`, as the
    format's dicts (a note shorter than a sixteenth lasts one)."""
    grid = score.resample(tpq=4, min_dur=1)
    out = []
    for track in grid.tracks:
        if track.is_drum:
            continue
        for note in track.notes:
            if start <= note.time < end:
                out.append(
                    {"start": note.time, "pitch": note.pitch, "duration": min(note.duration, end - note.time)}
                )
    return sorted(out, key=lambda n: (n["start"], n["pitch"], n["duration"]))


def write_generation(score, path: Path) -> Path:
    """The continuation part of a drawn score (bars 6-17) as a generation file, written atomically."""
    write_text_atomic(path, json.dumps({"generation": notes_in(score)}, indent=1) + "\n")
    return Path(path)
