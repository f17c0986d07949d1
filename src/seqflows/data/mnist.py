r"""MNIST digits: IDX files, their checksums and a verified download (for Moving MNIST, Sec. 4).

The four standard files (LeCun, Cortes and Burges) are served by several mirrors; every file is
checked against its MD5 checksum (:data:`MNIST_FILES`), downloads go to a temporary file that
replaces the target only once verified, and a failure names the file, the mirrors tried and the
folder where the file can be put by hand.

References:
    | Gradient-based learning applied to document recognition (LeCun et al., 1998)
    | http://yann.lecun.com/exdb/mnist/
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, SeqflowsError

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "DownloadError",
    "download_mnist",
    "load_digits",
    "md5sum",
    "read_idx",
]

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

IDX_DTYPES = {  # IDX type code -> big-endian numpy dtype
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


class DownloadError(SeqflowsError, RuntimeError):
    r"""No mirror delivered a file with the right checksum."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    r"""Reads an IDX file (gzipped or raw): 0, 0, type code, number of dims, big-endian int32
    sizes, then the data.

    Arguments:
        path: The file; gzipped if its name ends in .gz or its bytes start with the gzip magic.

    Returns:
        The array (uint8 for images and labels), in native byte order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    content = path.read_bytes()
    if path.suffix == ".gz" or content[:2] == GZIP_MAGIC:
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as error:
            message = f"{path}: not a valid gzip file, corrupt or truncated ({error})"
            raise DataError(message) from error
    if len(content) < 4 or content[:2] != b"\0\0":
        raise DataError(f"{path}: not an IDX file (bad magic number {content[:4].hex()})")
    code, ndim = content[2], content[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: truncated IDX header ({len(content)} bytes)")
    shape = tuple(int(size) for size in np.frombuffer(content, ">i4", ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(content) - header
    if actual != expected:
        raise DataError(
            f"{path}: the data of shape {shape} need {expected} bytes, the file holds {actual} "
            f"(truncated or corrupt)"
        )
    array = np.frombuffer(content, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def md5sum(path: str | os.PathLike) -> str:
    r"""The MD5 checksum of a file, as a hex string, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    """Downloads url to target through a temporary file; raises on any failure."""
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        digest = hashlib.md5()
        size = 0
        with os.fdopen(handle, "wb") as file, urllib.request.urlopen(url, timeout=timeout) as r:
            length = r.headers.get("Content-Length") if r.headers else None
            while chunk := r.read(CHUNK):
                file.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if length is not None and size != int(length):
            raise OSError(f"truncated download: {size} of {length} bytes")
        if digest.hexdigest() != md5:
            raise OSError(f"wrong checksum: md5 {digest.hexdigest()}, expected {md5}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def download_mnist(
    root: str | os.PathLike,
    files: Sequence[str] = ("train-images-idx3-ubyte.gz",),
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30,
) -> dict[str, Path]:
    r"""Makes sure that MNIST files are in ``root`` with the right checksum, downloading them.

    A file already present with the right MD5 is kept. Otherwise every mirror is tried in turn;
    a download that fails, arrives truncated or has the wrong checksum is deleted and the next
    mirror is tried.

    Arguments:
        root: The folder of the files (created if needed).
        files: Names of files from :data:`MNIST_FILES`.
        mirrors: Base URLs (any scheme urllib opens, e.g. https:// or file://).
        timeout: Seconds to wait for a mirror to answer.

    Returns:
        The path of every file, by name.

    Raises:
        DownloadError: If a file could not be obtained from any mirror; the message names the
        file, its checksum, the URLs tried and their errors.
    """
    root = Path(root)
    unknown = [name for name in files if name not in MNIST_FILES]
    if unknown:
        raise ValueError(f"unknown MNIST files {unknown}: choose from {list(MNIST_FILES)}")
    root.mkdir(parents=True, exist_ok=True)
    paths, failures = {}, []
    for name in files:
        target, md5 = root / name, MNIST_FILES[name]
        if target.is_file() and md5sum(target) == md5:
            paths[name] = target
            continue
        errors = []
        if target.is_file():
            errors.append(f"    {target}: present, but with the wrong checksum {md5sum(target)}")
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _fetch(url, target, md5, timeout)
            except (OSError, ValueError, http.client.HTTPException) as error:
                errors.append(f"    {url}: {error}")
            else:
                paths[name] = target
                break
        else:
            failures.append(f"  {name} (md5 {md5}):\n" + "\n".join(errors or ["    no mirrors"]))
    if failures:
        raise DownloadError(
            "could not download MNIST:\n"
            + "\n".join(failures)
            + f"\nDownload the file(s) by hand from one of the mirrors {list(mirrors)} and put "
            f"them in {root} (their checksums are verified)."
        )
    return paths


def load_digits(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    r"""Loads MNIST digit images start .. stop - 1 from an IDX images file.

    Arguments:
        path: An images file, e.g. t10k-images-idx3-ubyte.gz.
        start: First digit.
        stop: One past the last digit; default all.

    Returns:
        uint8 digits, with shape (stop - start, 28, 28).
    """
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{path}: not an images file: expected uint8 (N, H, W), got {images.dtype} "
            f"{images.shape}"
        )
    count = len(images)
    stop = count if stop is None else stop
    if not 0 <= start < stop <= count:
        raise ValueError(f"{path}: holds {count} digits, cannot take digits {start} .. {stop - 1}")
    return images[start:stop].copy()
