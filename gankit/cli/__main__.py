"""`python -m gankit.cli` runs the gankit command. Light tier."""

from gankit.cli import main

main()
