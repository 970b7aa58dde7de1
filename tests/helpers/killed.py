"""A training job that dies mid-task, as SIGKILL would end it: for the resume tests."""

from clpipe.methods.base import ContinualMethod


def dies_at(method: ContinualMethod, calls: int, hook: str = "after_step") -> ContinualMethod:
    """``method``, whose ``hook`` raises KeyboardInterrupt at its ``calls``-th call (after
    the method's own hook has run): the job stops between two steps, its epoch checkpoint
    as the last finished epoch left it."""
    own = getattr(method, hook)
    count = 0

    def counted(model):
        nonlocal count
        own(model)
        count += 1
        if count == calls:
            raise KeyboardInterrupt("killed")

    setattr(method, hook, counted)
    return method
