"""User errors end a command with one clear line and exit code 2, not a traceback.

A *user error* is something the person running the command can fix (a malformed CSV, a
missing Kaggle input, a bad argument); its message says what and where. Everything else is a
bug and keeps its traceback. ``--debug`` (or ``ARENA_PREF_DEBUG=1``) shows the traceback of user
errors too.

    def main(argv=None) -> int: ...
    if __name__ == "__main__":
        sys.exit(run_command(main))
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

USER_ERROR_EXIT = 2  # argparse's code for bad usage: the same family of mistakes
DEBUG_FLAG = "--debug"
DEBUG_ENV = "ARENA_PREF_DEBUG"


class UserError(Exception):
    """Base of every error the user can fix; ``str(error)`` is the one line that is printed. Never raised bare:
    each subclass is also a ``ValueError`` (the library's family; ``tests/test_layers.py`` checks it), so a caller
    of the library catches one family whichever module raised."""


class UsageError(UserError, ValueError):
    """A command-line argument whose value cannot work (``--seed -1``, ``--num-boost-round 0``, ...)."""


class PreflightError(UserError, ValueError):
    """A run would fail (or mean nothing) with these arguments."""


@contextmanager
def arguments_checked(prefix: str = "") -> Iterator[None]:
    """Turn the ``ValueError``/``OSError`` that library code raises for bad settings (a dataclass's
    ``__post_init__``, a file that cannot be read) into a :class:`UsageError`: inside a command's
    argument phase such an error is the user's, and must read as one line, not a traceback."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, OSError) as exc:
        text = f"{exc.filename}: {exc.strerror or exc}" if isinstance(exc, OSError) and exc.filename else str(exc)
        raise UsageError(f"{prefix}{text}") from exc


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def one_line(error: BaseException) -> str:
    """The message on one line: a multi-line message would read as several errors."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 2000 else text[:1997] + "..."


def run_command(main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`UserError` becomes ``error: <message>`` on stderr and exit code 2.

    ``--debug`` is taken out of ``argv`` before ``main`` sees it (so no parser needs to know it) and
    lets the traceback through, as does ``ARENA_PREF_DEBUG=1``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        code = main(argv)
    except UserError as error:
        if debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except SystemExit as stop:  # ``raise SystemExit("message")`` would print the message and exit 1
        if not isinstance(stop.code, str) or debug:
            raise
        print(f"error: {one_line(Exception(stop.code))}", file=sys.stderr)
        return USER_ERROR_EXIT
    return 0 if code is None else int(code)
