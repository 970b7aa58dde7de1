"""Errors that are the user's to fix: reported as one message, never as a traceback.

Every error the pipeline raises about its input (the config, a data file, a file one
step hands to another) derives from :class:`InputError`; a failure of the file system
(no such folder, no permission, a full disk) is the machine's, and is said the same
way (:func:`file_system_message`). A step that stops on either logs its message alone
and exits with status 1 (clpipe.logs); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class InputError(Exception):
    """A problem with what the pipeline was given; the message names it and the remedy."""


class ConfigError(InputError, ValueError):
    """A configuration value the pipeline cannot run with; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


# what to do about a file-system failure, by its errno
REMEDIES = {
    errno.ENOENT: "check that the path exists (a folder of the config, a file a step made)",
    errno.EACCES: "give this user the permission, or choose a folder it can read and write",
    errno.EPERM: "give this user the permission, or choose a folder it can read and write",
    errno.ENOSPC: "free space on that disk (or put results_dir on another one), then run again",
    errno.EDQUOT: "free space in your quota (or put results_dir elsewhere), then run again",
    errno.EROFS: "the file system is read-only: choose a results_dir on a writable one",
    errno.ENOTDIR: "a part of the path is a file where a folder should be",
    errno.EISDIR: "the path is a folder where a file should be",
}


def file_system_message(err: OSError) -> str:
    """One line for a file-system failure: the path, what the system said, what to do."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None) or "a file"
    what = err.strerror or str(err)
    remedy = REMEDIES.get(err.errno or -1, "check the path and the machine's disk, then run again")
    return f"{where}: {what} ({remedy})"
