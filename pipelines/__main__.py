"""``python -m pipelines`` runs the ``personas`` command line."""

from pipelines.cli import main

main()
