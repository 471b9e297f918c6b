"""A helper shared by the command-line tests (tests/cli, tests/dask)."""

from varinf.__main__ import main


def fails(argv, capsys, *expected):
    """main(argv) exits with status 2 and one line on stderr containing ``expected``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err
