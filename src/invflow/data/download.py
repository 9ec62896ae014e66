"""Cache directory, mirror URLs and checksummed downloads (urllib only).

Files are fetched into a temporary file beside their destination, verified, then renamed into
place, so a cache never holds a partial or unverified file, even with several processes (DDP
ranks) downloading at once.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

CACHE_ENV = "INVFLOW_CACHE"
MIRROR_ENV = "INVFLOW_DATA_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def cache_dir(subfolder: str) -> Path:
    """``$INVFLOW_CACHE/<subfolder>``, or ``~/.cache/invflow/<subfolder>`` when unset."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "invflow"
    return Path(root).expanduser() / subfolder


def mirror_url(default_base: str, filename: str) -> str:
    """URL of ``filename``: ``$INVFLOW_DATA_MIRROR/<filename>`` if set, else under ``default_base``."""
    base = os.environ.get(MIRROR_ENV) or default_base
    return f"{base.rstrip('/')}/{filename}"


def file_digest(path: Path, algorithm: str, gunzip: bool = False) -> str:
    """Hex digest of a file, or of its decompressed payload when ``gunzip`` (ValueError if not gzip)."""
    digest = hashlib.new(algorithm)
    try:
        with (gzip.open(path, "rb") if gunzip else open(path, "rb")) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as err:
        if not gunzip:
            raise
        raise ValueError(
            f"checksum verification failed for {path.name}: not a readable gzip file ({err})"
        ) from err
    return digest.hexdigest()


def verify_checksum(path: Path, name: str, algorithm: str, expected: str, gunzip: bool = False) -> None:
    """Raise ValueError naming ``name``, the expected and the actual digest when they differ."""
    actual = file_digest(path, algorithm, gunzip)
    if actual != expected:
        what = "decompressed payload " if gunzip else ""
        raise ValueError(
            f"checksum mismatch for {name}: expected {what}{algorithm} {expected}, got {actual}; "
            f"the download is corrupt or the mirror serves another file (set {MIRROR_ENV} to a "
            "good mirror, or place a verified copy yourself)"
        )


def download_verified(url: str, dest: Path, algorithm: str, expected: str, gunzip: bool = False) -> Path:
    """Fetch ``url`` to ``dest``, verifying its ``algorithm`` digest (of the gzip payload if ``gunzip``).

    Nothing is left at ``dest`` (or beside it) unless the checksum matched. Network failures raise
    FileNotFoundError saying how to get the file by other means.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, dest.name)
        verify_checksum(tmp, dest.name, algorithm, expected, gunzip)
        tmp.chmod(0o644)  # mkstemp makes it private; a cache may be shared
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(url: str, out: BinaryIO, name: str) -> None:
    """Stream ``url`` into the open binary file ``out``; progress bar only on a terminal."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}",
                      disable=not sys.stderr.isatty()) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        raise FileNotFoundError(
            f"could not download {url} ({err}); check the network, set {MIRROR_ENV} to a reachable "
            "mirror, or pass data_dir with the file already in it"
        ) from err
