"""``python -m trainer.launch``: the pod entry point every rendered Job and the image run (see launcher)."""

import sys

from launcher.main import main

if __name__ == "__main__":
    sys.exit(main())
