"""`python3 deploy/runtime up|env|down` (or `python3 -m runtime` with deploy/ on the path)."""

import sys
from pathlib import Path

if not __package__:
    # Run as a directory: its own folder is on the path, the folder holding the package is not.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from runtime.cli import main

sys.exit(main())
