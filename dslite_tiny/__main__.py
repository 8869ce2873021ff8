"""``python -m dslite_tiny`` runs the command line."""
from dslite_tiny.cli import main

main()
