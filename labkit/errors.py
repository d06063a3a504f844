"""labkit's exceptions: each says what happened, why, and the command that fixes it."""

from __future__ import annotations

from .i18n import _


class LabkitError(Exception):
    """Base class; the message is written for a learner, not for a debugger."""

    def __init__(self, message: str, *, fix: str | None = None):
        self.fix = fix
        super().__init__(message + ("\n  " + _("fix: {fix}").format(fix=fix) if fix else ""))


class ClusterUnreachable(LabkitError):
    """No Kubernetes API answers at the kubeconfig's address."""


class PortInUse(LabkitError):
    """A port the lab needs is taken by another process."""


class BinariesUnavailable(LabkitError):
    """The cluster's binaries are not cached and cannot be built or downloaded."""


class ManifestError(LabkitError):
    """A YAML manifest does not parse or the API server rejected it."""


class NotFound(LabkitError):
    """The object asked for does not exist."""


class WaitTimeout(LabkitError):
    """A wait ran past its deadline; carries the last state seen."""

    def __init__(self, message: str, *, last_seen: object = None, fix: str | None = None):
        self.last_seen = last_seen
        super().__init__(message, fix=fix)


class WaitFailed(LabkitError):
    """A wait ended early because the object reached a failure condition."""
