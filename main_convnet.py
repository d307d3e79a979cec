"""The course's convnet command line: `python main_convnet.py --mode train|predict ...` (see --help)."""

from qd.cli import main

if __name__ == "__main__":
    main("convnet")
