"""``python -m polysync``: runs the command line (:func:`polysync.cli.main`)."""

from polysync.cli import main

if __name__ == "__main__":  # spawned demo workers import this module; they must not rerun it
    raise SystemExit(main())
