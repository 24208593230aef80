"""Seconds from the Generate click to the audio players on the page (python -m lm_music.app), against the same
samples through `python sample.py` (the whole command, start-up included), for the shipped Bach model.

    python bench/app.py [--samples 4] [--length 256] [--repeats 3] [--out bench/results/app.jsonl]

Needs Debian's chromium and chromium-driver (tests/browser.py). Prints one JSON line per setting, medians of
the repeats; the page and the command alternate, so both see the same machine.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import hardware  # noqa: E402

from tests.browser import chromium, serve_app, type_into, wait_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    page, command = [], []
    work = Path(tempfile.mkdtemp(prefix="bench_app_"))
    with serve_app(work / "app.log") as url, chromium() as browser:
        for repeat in range(args.repeats):
            browser.get(url)
            wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
            type_into(browser, "num_samples", args.samples)
            type_into(browser, "length", args.length)
            type_into(browser, "seed", repeat)
            start = time.perf_counter()
            browser.find_element("id", "generate").click()
            for i in range(args.samples):
                wait_for(browser, f"#audio_{i} a[href]", 600)
            page.append(time.perf_counter() - start)

            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "sample.py",
                    f"num_samples={args.samples}",
                    f"length={args.length}",
                    f"seed={repeat}",
                ]
                + [f"out_dir={work / str(repeat)}"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            command.append(time.perf_counter() - start)
    common = {
        "samples": args.samples,
        "length": args.length,
        "repeats": args.repeats,
        "date": date.today().isoformat(),
    }
    rows = [
        {
            "benchmark": "app_click_to_audio",
            "seconds": round(statistics.median(page), 2),
            "runs": page,
            **common,
        },
        {
            "benchmark": "sample_py_command",
            "seconds": round(statistics.median(command), 2),
            "runs": command,
            **common,
        },
    ]
    for row in rows:
        row.update(hardware())
        line = json.dumps(row)
        print(line)
        if args.out:
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
