"""`python -m jobctl` = the `jobctl` command."""

from jobctl.cli import main

main()
