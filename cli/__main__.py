"""``python -m cli`` — same as the ``tfl2o`` console script."""

from cli.main import app

if __name__ == "__main__":  # pragma: no cover
    app(prog_name="tfl2o")
