"""``python -m trainer.launch``: the pod entry point every rendered Job and the image run (see trainer.launcher)."""

import sys

from trainer.launcher.main import main

if __name__ == "__main__":
    sys.exit(main())
