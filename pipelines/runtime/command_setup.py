"""What every command does first: one log format and one argument-parser shape."""

from __future__ import annotations

import argparse
import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging() -> None:
    """INFO to stderr with timestamps (a no-op when logging is already configured, as under pytest)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def command_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """``python -m <module>``'s parser, its help the module docstring as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
