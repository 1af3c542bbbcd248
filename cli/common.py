"""What both CLIs share: logging, and turning user errors into one line and exit code 2."""
from __future__ import annotations

import functools
import logging
import sys

import click


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(levelname)s %(asctime)s [%(name)s] %(message)s", datefmt="%m-%d %H:%M:%S")


def user_errors(fn):
    """A ValueError raised by our code is the user's to fix: print its sentence, exit 2, no traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)
    return wrapper
