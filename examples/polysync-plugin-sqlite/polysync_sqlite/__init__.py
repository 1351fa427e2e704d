"""An example third-party polysync backend: every object is rows in one SQLite file."""
