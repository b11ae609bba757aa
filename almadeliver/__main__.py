"""``python -m almadeliver``: the command line."""
from .cli import main

main()
