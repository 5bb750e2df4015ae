"""`python -m sluice.cli`: what the tests run, the same as the `sluice` script."""

from sluice.cli.app import main

main()
