import pytest

from cube.synthetic import nonlinear_pairs


@pytest.fixture(scope="session")
def synthetic():
    """A small nonlinear task: 16d -> 16d, 1200 pairs."""
    return nonlinear_pairs(n=1200, d_in=16, d_out=16, seed=0)



@pytest.fixture
def cube(tmp_path, monkeypatch, capsys):
    """cube(*args) -> (exit status, stdout, stderr): the `cube` command line run in this process, in tmp_path."""
    from app.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse refuses a command line by exiting
            status = exc.code
        out = capsys.readouterr()
        return status, out.out, out.err

    return run
