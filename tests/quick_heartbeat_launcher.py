"""``python -m trainer.launch`` with short heartbeat timings, for the tests that lose a peer (its launcher killed):
a beat every 0.3 s and a peer lost after QUICK_PEER_TIMEOUT seconds (default 3) instead of 15."""

from __future__ import annotations

import os
import sys

from contract import rendezvous

rendezvous.HEARTBEAT_SECONDS = 0.3
rendezvous.PEER_TIMEOUT = float(os.environ.get("QUICK_PEER_TIMEOUT", "3"))

from launcher.main import main  # noqa: E402  after the timings are set

if __name__ == "__main__":
    sys.exit(main())
