"""nvshim's errors: one family under :class:`NvshimError`.

Every error that stops a create derives from :class:`NvshimError` and knows
what failed (:attr:`NvshimError.what`) and why (:attr:`NvshimError.why`), so a
caller catches one type and prints :attr:`NvshimError.line`; nothing is
caught only to be raised again with another message.

This module imports nothing: the pass-through path uses it.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: this module is on the pass-through path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from nvshim.requirements import Factor

__all__ = [
    "ArgvError",
    "ConfigError",
    "ModifierError",
    "NvshimError",
    "PluginError",
    "RequestError",
    "RequirementsNotMet",
    "RuntimeNotFound",
    "SpecError",
]


class NvshimError(Exception):
    """A failure that stops a create: ``nvshim: <what failed>: <why>``.

    ``NvshimError(what, why)`` names both, and ``str(exc)`` is ``what: why``.
    The subclasses are raised with their message only
    (``SpecError("cannot read x")``): ``str(exc)`` is that message, and
    :attr:`what` is the subclass's, unless ``what=`` names it
    (``SpecError(msg, what="cannot write the spec")``) or the core
    :meth:`attribute` s it (a modifier's refusal gets the modifier's name).
    """

    #: What failed, for errors raised with their message only.
    what = "error"

    def __init__(self, message: str, why: str | None = None, *, what: str | None = None) -> None:
        if why is not None:
            what, message = message, why
        super().__init__(message)
        #: Why it failed: the message.
        self.why = message
        self._named = what is not None
        if what is not None:
            self.what = what

    def attribute(self, what: str, why: str | None = None) -> NvshimError:
        """Name what failed (and, optionally, shorten why); returns the error itself."""
        self.what = what
        if why is not None:
            self.why = why
        self._named = True
        return self

    def __str__(self) -> str:
        return f"{self.what}: {self.why}" if self._named else self.why

    @property
    def line(self) -> str:
        """The line shown to the user and written to the logs."""
        return f"nvshim: {self.what}: {self.why}"


class ArgvError(NvshimError):
    """A runtime command line that nvshim cannot act on."""

    what = "bad arguments"


class ConfigError(NvshimError):
    """A configuration file, key or value that cannot be used.

    The message names the file and the key (``config /etc/x.toml: key
    'nvshim.modifier-timeout': ...``).
    """

    what = "bad configuration"


class SpecError(NvshimError):
    """A config.json that cannot be read, parsed, used or written."""

    what = "cannot load the spec"


class RequestError(NvshimError, ValueError):
    """A GPU container's request that cannot be honoured as written.

    Raised for a legacy CUDA image whose ``CUDA_VERSION`` is not a version
    (NVIDIA's hook refuses such a container too).  A ``ValueError`` too, as
    it always was.
    """

    what = "cannot read the container's request"


class RequirementsNotMet(NvshimError):
    """The host does not satisfy a container's requirements.

    ``str(exc)`` is the line shown to the user, e.g. ``requirements not met:
    unsatisfied condition: cuda>=12.4 (cuda=11.4)``.
    """

    what = "container requirements"

    def __init__(self, message: str, factor: Factor | None = None) -> None:
        super().__init__(message)
        #: The factor that failed (the first one of the first failing expression).
        self.factor = factor


class ModifierError(NvshimError):
    """Raised by a modifier or a validator to refuse a container.

    The message reaches the user as
    ``nvshim: modifier '<name>' (<dist> <version>): <message>``: the core
    sets :attr:`what` to the modifier (or validator) and its distribution.
    """

    what = "refused by a plugin"


class PluginError(NvshimError):
    """A plugin that cannot be used (broken, or two modifiers of one name)."""

    what = "plugin error"


class RuntimeNotFound(NvshimError):
    """No configured low-level runtime could be found."""

    what = "cannot find the low-level runtime"
