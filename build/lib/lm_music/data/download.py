"""Fetch a public file from the first of several URLs that gives a complete, valid copy.

Dataset mirrors go down and proxies truncate, so every attempt is checked (length, checksum, content)
in a temporary file beside the destination and only renamed into place when it passes: a partial or
wrong file never sits at the destination for a later run to trust.
"""

import hashlib
import logging
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lm_music.errors import UserError
from lm_music.io import atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16


def _fetch(url: str, tmp: Path, timeout: float) -> str:
    """Stream `url` into `tmp`; return its sha256. Raise if the body is shorter or longer than announced."""
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
        announced = response.headers.get("Content-Length")
        while chunk := response.read(CHUNK_BYTES):
            f.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if announced is not None and int(announced) != received:
        raise ValueError(f"got {received} bytes of the {announced} announced (truncated download)")
    return digest.hexdigest()


def download(
    urls: list[str],
    dest: str | Path,
    verify: Callable[[Path], object] | None = None,
    sha256: str | None = None,
    timeout: float = 60,
) -> Path:
    """Download to `dest` from the first URL whose copy is complete, matches `sha256` and passes `verify`.

    `verify(path)` raises when the content is wrong (e.g. a mirror's HTML error page). When every URL
    fails, raise UserError naming the URLs, the last reason, and where to put the file by hand.
    """
    dest = Path(dest)
    reason = "no URL given"
    for url in urls:
        log.info("downloading %s from %s", dest.name, url)
        try:
            with atomic_path(dest) as tmp:
                digest = _fetch(url, tmp, timeout)
                if sha256 is not None and digest != sha256.lower():
                    raise ValueError(f"sha256 is {digest}, expected {sha256}")
                if verify is not None:
                    verify(tmp)
            return dest
        except Exception as error:  # network, HTTP, truncation, checksum or content: try the next URL
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            log.warning("download of %s from %s failed (%s)", dest.name, url, reason)
    raise UserError(
        f"could not download {dest.name}: tried {', '.join(urls) or 'no URL'}; last error: {reason}. "
        f"Download it by hand and put it at {dest}"
    )
