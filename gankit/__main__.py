"""`python -m gankit` runs the gankit command (the same as `gankit` and `python -m gankit.cli`). Light tier."""

from gankit.cli import main

main()
