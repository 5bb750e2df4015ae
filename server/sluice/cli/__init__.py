"""`sluice`: the command line for people and scripts (console script `sluice.cli:main`)."""

from sluice.cli.app import app, main

__all__ = ["app", "main"]
