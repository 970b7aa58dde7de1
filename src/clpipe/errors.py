"""Errors that are the user's to fix: reported as one message, never as a traceback.

Every error the pipeline raises about its input (the config, a data file, a file one
step hands to another) derives from :class:`InputError`. A step that stops on one logs
its message alone and exits with status 1 (clpipe.logs); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """A problem with what the pipeline was given; the message names it and the remedy."""


class ConfigError(InputError, ValueError):
    """A configuration value the pipeline cannot run with; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")
