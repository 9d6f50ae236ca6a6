"""`python -m agents.cli`: the same as the `jiexu` command."""

from agents.cli import main

main()
