"""``python -m invflow`` (and ``torchrun -m invflow``) runs the CLI."""
import sys

from invflow.cli import main

sys.exit(main())
