"""Render time per second of music (issue 43): each renderer of lm_music/audio.py (the SoundFont sampler,
pretty_midi's sine waves, FluidSynth where pyfluidsynth and libfluidsynth are installed) on the first
`--seconds` of `--pieces` MIDI files of a folder, at 22,050 Hz. Prints one JSON line: the median seconds of
rendering per second of music for each, and the sampler's ratio to the others.

    python bench/audio.py --folder PATH/pop909 --pieces 8 --seconds 30
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import symusic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.audio import AudioRenderer, Notes  # noqa: E402
from lm_music.errors import UserError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    files = sorted(Path(args.folder).rglob("*.mid"))[: args.pieces]
    pieces = []
    for path in files:
        score = symusic.Score(str(path)).to("second")
        start = min((t.notes[0].time for t in score.tracks if t.notes), default=0.0)
        pieces.append(score.clip(start, start + args.seconds, clip_end=True))
    renderers = {}
    for name in ("soundfont", "sine", "fluidsynth"):
        try:
            renderers[name] = AudioRenderer.from_options({"renderer": name})
        except UserError as error:
            print(f"{name}: not measured ({error})", file=sys.stderr)
    result = {"pieces": len(pieces), "seconds_each": args.seconds, "sample_rate": 22050}
    for name, renderer in renderers.items():
        renderer.render(pieces[0])  # the SoundFont read once, as in a process that renders many
        per_second = []
        for piece in pieces:
            notes = Notes.of(piece)
            begin = time.perf_counter()
            renderer.render(piece)
            per_second.append((time.perf_counter() - begin) / max(float(notes.end.max()), 1e-9))
        result[f"{name}_render_s_per_music_s"] = round(statistics.median(per_second), 4)
    for other in ("sine", "fluidsynth"):
        if other in renderers:
            result[f"soundfont_over_{other}"] = round(
                result["soundfont_render_s_per_music_s"] / result[f"{other}_render_s_per_music_s"], 2
            )
    print(json.dumps(result | hardware()))


if __name__ == "__main__":
    main()
