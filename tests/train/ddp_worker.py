"""Run by ``torchrun`` in tests/train/test_distributed.py: train, then record this rank's state hash."""
import hashlib
import sys
from pathlib import Path

import torch

import invflow
from invflow.config import parse_override
from invflow.train.loop import train


def state_hash(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (ActNorm init, power-iteration vectors included)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    preset, out, hashes, *sets = sys.argv[1:]
    result = train(invflow.load_config(preset, dict(map(parse_override, sets))), out, progress=False)
    Path(hashes, f"rank{torch.distributed.get_rank()}.txt").write_text(state_hash(result.model))
