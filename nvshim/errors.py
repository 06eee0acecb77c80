"""The error nvshim reports to the user in one line."""

from __future__ import annotations

__all__ = ["NvshimError"]


class NvshimError(Exception):
    """A failure that stops a create: ``nvshim: <what failed>: <why>``."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why

    @property
    def line(self) -> str:
        """The line shown to the user and written to the logs."""
        return f"nvshim: {self.what}: {self.why}"
