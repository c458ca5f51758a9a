"""`python -m export`: see export/cli.py."""

from .cli import main

main()
