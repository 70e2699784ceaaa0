"""`python -m maskclip_cli` (and `torchrun -m maskclip_cli train ...`) runs the CLI."""

from .cli import main

main()
