"""Command lines of labkit's stand-ins for NVIDIA's tools (``nvidia-smi``, ``dcgmi``): one parser, one error."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager


class UsageError(Exception):
    """A command line this stand-in does not support."""


def parse_options(argv: Sequence[str], valued: Mapping[str, str], flags: Mapping[str, str]) -> dict[str, str]:
    """``--opt=value``, ``--opt value``, ``-i 0`` and bare flags into {canonical name: value} (flags map to "")."""
    options: dict[str, str] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, has_value, value = arg.partition("=")
        if name in valued:
            if not has_value:
                if not args:
                    raise UsageError(f"{name} needs a value")
                value = args.pop(0)
            options[valued[name]] = value
        elif arg in flags:
            options[flags[arg]] = ""
        else:
            raise UsageError(f"`{arg}` is not supported")
    return options


DEADLINE_S = 60  # a stand-in answers within a second or two; one whose exporter never answers must not hang a cell


class DeadlineExceeded(Exception):
    """The stand-in got no answer in time (from the lab's GPU exporter, as a rule)."""


@contextmanager
def deadline(tool: str, seconds: int = DEADLINE_S) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded`, whose text is what ``tool`` says, when the block runs longer than ``seconds``
    (in the main thread)."""
    def expire(_signum: int, _frame: object) -> None:
        raise DeadlineExceeded(f"{tool} (labkit's stand-in): no answer within {seconds} s from the lab's GPU "
                               "exporter; `labkit status` shows whether it runs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
