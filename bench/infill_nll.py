"""What seeing both sides is worth (issue 45): bits per note of the real bars of a gap, scored by an infilling
model given the bars before and after (MMM's layout) and given the bars before only (a continuation), and by
a continuation model given the bars before. One seeded gap of `--bars` bars in each of `--songs` songs of a
split (at least 4 bars from either end), the same context budgets as sampling (`infill.CONTEXT_BEFORE`,
`CONTEXT_AFTER`); the Transformer's forward gives the conditionals sampling draws from.

    python bench/infill_nll.py --infill pretrained:pop909_infill --continuation pretrained:pop909 \\
        --data ../shared/data/midi/pop909 --split valid --songs 64 --bars 4
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music import generation  # noqa: E402
from lm_music.tasks.events import infill  # noqa: E402
from lm_music.tasks.events.codec import read_score  # noqa: E402

MARGIN = 4


@torch.no_grad()
def gap_nats(model, prime: np.ndarray, gap: np.ndarray) -> float:
    """Nats of the gap's ids after the prime, under the model's net."""
    ids = torch.as_tensor(np.concatenate([prime, gap]), dtype=torch.long)[None]
    logits, _ = model.sampler.net(ids[:, :-1])
    logp = torch.log_softmax(logits.float(), -1)[0, len(prime) - 1 :]
    return float(-logp.gather(1, ids[0, len(prime) :, None]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infill", default="pretrained:pop909_infill")
    parser.add_argument("--continuation", default="pretrained:pop909")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--songs", type=int, default=64)
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    filling, going_on = (
        generation.load_model(args.infill, "cpu"),
        generation.load_model(args.continuation, "cpu"),
    )
    codec, plain = filling.sampler.codec, going_on.sampler.codec
    marks = (codec.INFILL, codec.FILL_START, codec.FILL_END)
    rng = np.random.default_rng(args.seed)
    files = sorted((Path(args.data) / args.split).glob("*.mid"))
    totals = {"infill, both sides": 0.0, "infill, before only": 0.0, "continuation, before only": 0.0}
    notes = 0
    for file in rng.permutation(files)[: args.songs]:
        score = read_score(file)
        ids, ids_plain = codec.encode(score, eos=False), plain.encode(score, eos=False)
        starts = infill.bar_starts(ids, codec.BAR)
        if len(starts) <= 2 * MARGIN + args.bars:
            continue
        first = int(rng.integers(MARGIN, len(starts) - args.bars - MARGIN + 1))
        gap = infill.Gap(first, first + args.bars - 1)
        prime, real = infill.layout(ids, starts, gap, marks)
        before = prime[: int(np.flatnonzero(prime == codec.INFILL)[0])]
        begin = starts[gap.first]  # both vocabularies tokenize the same notes into the same base tokens
        plain_before, plain_real = (
            ids_plain[begin - len(before) : begin],
            ids_plain[begin : begin + len(real)],
        )
        assert codec.tokens(real) == plain.tokens(plain_real) and codec.tokens(before) == plain.tokens(
            plain_before
        )
        totals["infill, both sides"] += gap_nats(filling, prime, real)
        totals["infill, before only"] += gap_nats(filling, before, real)
        totals["continuation, before only"] += gap_nats(going_on, plain_before, plain_real)
        notes += codec.decode(real)[0].note_num()
    result = {k: round(v / math.log(2) / notes, 3) for k, v in totals.items()}
    print(
        json.dumps(
            {
                "bits_per_note": result,
                "notes": notes,
                "split": args.split,
                "bars": args.bars,
                "infill": args.infill,
                "continuation": args.continuation,
                "hardware": hardware(),
            }
        )
    )


if __name__ == "__main__":
    main()
