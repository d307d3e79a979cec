"""main_convnet.py: the course's command line (`--mode train|predict ...`), or Hydra overrides; see --help."""

from qd.main import main

if __name__ == "__main__":
    main("convnet")
