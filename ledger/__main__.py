"""`python -m ledger` is the `yikatong` command."""

from ledger.cli import main

main(prog_name="yikatong")
