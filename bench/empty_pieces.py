"""How often an event model's samples are empty or nearly so (issue 43): for each `--min-lengths` value,
`--samples` samples of `--length` tokens (seeds 0.. in batches of 16) from a model, and per sample its
notes, whether it ended early, the rest before its first note (the drawn MIDI, seconds) and the notes in the
first 20 seconds of its audio (which starts at the first note, lm_music/audio.py). One JSON line each.

    python bench/empty_pieces.py --model pretrained:pop909 --min-lengths 0 256 --threads 1
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music import generation  # noqa: E402
from lm_music.audio import Notes  # noqa: E402
from lm_music.options import sample_options  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained:pop909")
    parser.add_argument("--min-lengths", type=int, nargs="+", default=[0, 256])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = generation.load_model(args.model)
    for min_length in args.min_lengths:
        rows = []
        for seed in range(args.samples // 16):
            cfg = sample_options()
            overrides = dict(ckpt_path=args.model, num_samples=16, length=args.length, seed=seed, audio=False)
            cfg.merge_with(OmegaConf.create(overrides | {"min_length": min_length}))
            samples = generation.draw(model, cfg)
            for ids, score in zip(samples.ids, samples.scores):
                notes = Notes.of(score)
                timed = score.to("second")
                starts = [n.time for t in timed.tracks for n in t.notes]
                rows.append(
                    {
                        "notes": score.note_num(),
                        "ended_early": len(ids) < args.length + 1,
                        "lead_in_s": min(starts) if starts else None,
                        "heard_notes_20s": int((notes.start < 20).sum()),
                    }
                )
        lead = np.array([r["lead_in_s"] for r in rows if r["lead_in_s"] is not None])
        summary = {
            "model": args.model,
            "min_length": min_length,
            "samples": len(rows),
            "length": args.length,
            "empty": sum(r["notes"] == 0 for r in rows),
            "ended_early": sum(r["ended_early"] for r in rows),
            "under_4_notes_in_first_20s_heard": sum(r["heard_notes_20s"] < 4 for r in rows),
            "lead_in_over_1s": int((lead > 1).sum()),
            "lead_in_median_s": round(float(np.median(lead)), 2) if len(lead) else None,
            "lead_in_max_s": round(float(lead.max()), 1) if len(lead) else None,
            **hardware(),
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
