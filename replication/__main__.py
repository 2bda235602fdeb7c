"""``python -m replication ...`` (see replication.cli)."""

from __future__ import annotations

import sys

from replication.cli import main

if __name__ == "__main__":
    sys.exit(main())
