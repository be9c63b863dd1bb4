"""``python -m keyturn``: the same entry point as the ``keyturn`` console script."""

from keyturn.cli import main

main()
