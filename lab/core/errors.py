"""The lab's one error type, so a caller catches one thing whichever driver or step failed."""


class LabError(RuntimeError):
    """A lab step failed; the message names the step (and never quotes a key)."""
