"""Where the tests find their real datasets: one locator for every test.

The data folder is, in this order:
  1. $LM_MUSIC_TEST_DATA, when set (files missing there are fetched into it);
  2. ../shared/data beside the repository, when it exists (the project's CI provides it; never written to);
  3. a cache folder, $XDG_CACHE_HOME/lm_music/test-data (~/.cache/...), filled on first use.
Missing files are fetched from the public source that `data_sources.tsv` names for each, at a fixed commit,
with lm_music's own downloader (sha256 checked, written atomically: a bad or partial download is never kept),
and the pickles of the original layout are made from the .mat files. A file with no public source
(`lyrics/beatles.csv`) is not fetched: the few tests that read it skip, naming it.
$LM_MUSIC_TEST_DATA_URL replaces https://raw.githubusercontent.com (a mirror, or a local server in a test).

`python -m tests.data serve [DATA_DIR]` serves a filled data folder (by default the one located here) on 127.0.0.1 in the layout of the public
sources (what .ci/run gives a clone that has no ../shared): it prints the URL for LM_MUSIC_TEST_DATA_URL.
"""

import argparse
import csv
import hashlib
import logging
import os
import pickle
import signal
import sys
import tempfile
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from lm_music.data.download import download
from lm_music.errors import UserError
from lm_music.io import atomic_path
from lm_music.midi import LOWEST_PITCH
from lm_music.tasks.pianoroll.datamodule import read_benchmark

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = Path(__file__).with_name("data_sources.tsv")
GITHUB_RAW = "https://raw.githubusercontent.com"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    path: str  # in the data folder
    kind: str  # github | made | none
    source: str  # OWNER/REPO/COMMIT/PATH, the .mat a pickle is made from, or -
    sha256: str


def read_manifest() -> list[Source]:
    with open(MANIFEST, newline="") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        return [Source(**row) for row in rows]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TestData:
    """A data folder and how to fill it: `fill()` fetches or makes what is missing."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, root: Path, writable: bool, base_url: str = GITHUB_RAW) -> None:
        self.root, self.writable, self.base_url = Path(root), writable, base_url.rstrip("/")
        self.sources = read_manifest()

    def rows(self, path: str) -> list[Source]:
        """The manifest's rows for a path of the data folder: its own row, or, for a folder, those under it."""
        path = path.strip("/")
        return [s for s in self.sources if s.path == path or s.path.startswith(path + "/")]

    def missing(self) -> list[Source]:
        return [s for s in self.sources if not (self.root / s.path).is_file()]

    def url(self, source: Source) -> str:
        return f"{self.base_url}/{urllib.parse.quote(source.source)}"

    def fetch(self, source: Source) -> Path:
        return download([self.url(source)], self.root / source.path, sha256=source.sha256)

    def make_pickle(self, source: Source) -> Path:
        """The original pickle layout of a .mat benchmark: {split: [[(pitch, ...) per frame] per piece]}."""
        splits = read_benchmark(self.root / source.source)
        layout = {
            split: [[tuple(int(k) + LOWEST_PITCH for k in np.flatnonzero(f)) for f in roll] for roll in rolls]
            for split, rolls in splits.items()
        }
        dest = self.root / source.path
        with atomic_path(dest) as tmp:
            tmp.write_bytes(pickle.dumps(layout, protocol=2))
            if _sha256(tmp) != source.sha256:
                raise UserError(f"{source.path} made from {source.source} does not match its sha256")
        return dest

    def fill(self, workers: int = 8) -> list[Path]:
        """Fetch every missing file that has a public source (several at a time), then make the pickles.
        Return the files added; raise UserError naming each file that could not be fetched or made."""
        missing = self.missing()
        if not missing or not self.writable:
            return []
        fetched = [s for s in missing if s.kind == "github"]
        if fetched:
            log.warning("fetching %d test data files into %s (once)", len(fetched), self.root)
        errors, added = [], []
        with ThreadPoolExecutor(workers) as pool:
            for source, result in zip(fetched, pool.map(self._try, [self.fetch] * len(fetched), fetched)):
                (errors if isinstance(result, Exception) else added).append((source, result))
        for source in (s for s in missing if s.kind == "made"):
            result = self._try(self.make_pickle, source)
            (errors if isinstance(result, Exception) else added).append((source, result))
        if errors:
            # One line: the first failure says why (offline, a moved file); the rest are counted, not listed.
            first, error = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise UserError(
                f"{len(errors)} test data files could not be had; the first, {first.path}: {error}{more}. "
                f"Or set LM_MUSIC_TEST_DATA to a folder that holds them"
            )
        return [path for _, path in added]

    @staticmethod
    def _try(action, source: Source):
        try:
            return action(source)
        except Exception as error:  # reported together, per file
            return error


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without a log line per request."""

    def log_message(self, *args):
        pass


def build_mirror(data_root: Path, www: Path, corrupt: str | None = None) -> None:
    """The public sources' layout (OWNER/REPO/COMMIT/PATH) in `www`, as links into a filled data folder;
    the file at path `corrupt` is copied with one byte changed instead."""
    for source in read_manifest():
        if source.kind != "github":
            continue
        served = Path(www) / source.source
        served.parent.mkdir(parents=True, exist_ok=True)
        if source.path == corrupt:
            body = bytearray((data_root / source.path).read_bytes())
            body[len(body) // 2] ^= 0xFF
            served.write_bytes(bytes(body))
        else:
            served.symlink_to((Path(data_root) / source.path).resolve())


def locate() -> TestData:
    """The data folder the tests read, by the order in this module's docstring."""
    base_url = os.environ.get("LM_MUSIC_TEST_DATA_URL", GITHUB_RAW)
    if os.environ.get("LM_MUSIC_TEST_DATA"):
        return TestData(Path(os.environ["LM_MUSIC_TEST_DATA"]).expanduser(), True, base_url)
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return TestData(shared, False, base_url)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lm_music" / "test-data"
    return TestData(cache, True, base_url)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.data", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["serve"])
    parser.add_argument(
        "data_dir", type=Path, nargs="?", help="a filled data folder (default: located as above)"
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    data = locate() if args.data_dir is None else TestData(args.data_dir, writable=False)
    data.fill()
    missing = [s.path for s in data.missing() if s.kind != "none"]
    if missing:
        raise SystemExit(
            f"error: {data.root} lacks {len(missing)} files with a source, the first {missing[0]}"
        )
    with tempfile.TemporaryDirectory() as www:
        build_mirror(data.root, Path(www))
        httpd = ThreadingHTTPServer(("127.0.0.1", args.port), partial(QuietHandler, directory=www))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` still removes the mirror's folder
        print(f"http://127.0.0.1:{httpd.server_address[1]}", flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
