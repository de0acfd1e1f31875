"""`python -m tether`: the same as the `tether` executable (the server's workers start this way)."""

from tether.cli.entry import main

main()
