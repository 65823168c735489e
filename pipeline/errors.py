"""Errors longdoc reports to users, each mapped to a CLI exit code."""

from __future__ import annotations


class LongdocError(Exception):
    """Base class for expected failures: the CLI prints the message, not a traceback."""

    exit_code = 1


class InputError(LongdocError):
    """The user's input cannot be processed (bad file, empty document, over budget)."""

    exit_code = 2


class OverBudgetError(InputError):
    """The documents do not fit the direct prompt (``direct`` without ``--truncate``)."""


class BackendError(LongdocError):
    """The model backend failed: it could not start, timed out, or answered garbage."""

    exit_code = 3
