"""`python -m export`: see export/cli.py."""

from export.cli import main

main()
