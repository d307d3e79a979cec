"""The course's densenet command line: `python main_densenet.py --mode train|predict ...` (see --help)."""

from qd.cli import main

if __name__ == "__main__":
    main("densenet")
