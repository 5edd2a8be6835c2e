"""`python -m reproexec` is the `reproexec` command."""

from reproexec.cli import main

main()
