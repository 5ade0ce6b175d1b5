"""The trainer of the orphan tests (tests/test_local_lifecycle.py): the fake trainer, then, as a real one does at
its end, status.json "completed". A file of its own under tests/: a pod path such as /tmp in a local pod's env is
mapped to that pod's own folder, so the module cannot live in pytest's tmp_path."""

import os
import sys
from pathlib import Path

import launch_fake_trainer

from contract.progress import write_status

code = launch_fake_trainer.main()
if os.environ.get("MS_ROLE") == "MS_WORKER" and code == 0:
    ckpt = Path(sys.argv[sys.argv.index("--ckpt_path") + 1])
    write_status(ckpt / "status.json", state="completed", step=20, total_steps=20)
sys.exit(code)
