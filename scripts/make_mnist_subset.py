"""Write the tests' small MNIST fixture: the first images of each split of the real IDX files.

    python scripts/make_mnist_subset.py ../shared/data/mnist tests/data/mnist-subset

Deterministic (gzip without a timestamp), so the files and the SHA-256 of their payloads, printed
and listed in ``tests/data/mnist-subset/README.md``, are the same on every run.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

COUNTS = {"train": 2000, "t10k": 500}  # first images of each split
KINDS = (("images-idx3-ubyte", 16, 28 * 28), ("labels-idx1-ubyte", 8, 1))  # name, header bytes, item bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of the full MNIST .gz files")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for prefix, count in COUNTS.items():
        for kind, header_bytes, item_bytes in KINDS:
            name = f"{prefix}-{kind}.gz"
            with gzip.open(args.source / name) as f:
                data = f.read()
            header = bytearray(data[:header_bytes])
            header[4:8] = count.to_bytes(4, "big")  # the item count of the IDX header
            payload = bytes(header) + data[header_bytes:header_bytes + count * item_bytes]
            with open(args.out / name, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0,
                                                                   compresslevel=9) as g:
                g.write(payload)
            print(f"{hashlib.sha256(payload).hexdigest()}  {len(payload)}  {name}")


if __name__ == "__main__":
    main()
