"""`python -m cassava_edge` runs the command-line interface."""

from cassava_edge.cli import main

if __name__ == "__main__":
    main()
