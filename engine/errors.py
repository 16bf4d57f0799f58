"""The one base of every refusal of user input.

A :class:`PredliqError` is raised for input a user can fix — a config, a data or model file, a
URL, a command-line value — and its message is one line naming that input. The command line
catches this base only and prints ``error: <message>``; any other exception is a bug and is
shown as a traceback. Each area subclasses it (``ConfigError``, ``ReplayError``,
``OutputPathError``, ``ModelError``, ``DataError``, ``TrackingError``, ``EvaluationError``...),
keeping the builtin base it had before (``ValueError`` mostly), so callers that catch that still
work.
"""

from __future__ import annotations


class PredliqError(Exception):
    """Input that predliq refuses; the message names the input and what is wrong with it."""
