"""The course's bestmodel command line: `python main_bestmodel.py --mode train|predict ...` (see --help)."""

from qd.cli import main

if __name__ == "__main__":
    main("bestmodel")
