"""qd results on sources that hold no trials."""

import pytest

from qd.experiment.results import main


def test_a_folder_without_trials_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'empty'}: no trials found (no job records, no study)\n"
