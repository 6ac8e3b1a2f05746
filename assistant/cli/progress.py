"""Progress bars on the terminal (stderr) for long model work, and nothing elsewhere.

Output that goes to a pipe or a file stays clean: the bar appears only when stderr is a
terminal. When stdout is the same terminal, text printed meanwhile appears above the bar;
when it is a file, it goes to the file untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(
    description: str, total: float, *, enabled: bool = True, unit: str = ""
) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``update(completed, total=None, done="")``.

    Without a terminal on stderr (or not ``enabled``) the update does nothing.
    """
    if not enabled or not sys.stderr.isatty():
        yield _no_progress
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(MofNCompleteColumn() if not unit else TextColumn(f"{{task.fields[done]}}{unit}"))
    columns.append(TimeElapsedColumn())
    progress = Progress(
        *columns,
        console=Console(stderr=True),
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
        transient=False,
    )
    task = progress.add_task(description, total=total, done="")

    def update(completed: float, total: float | None = None, done: str = "") -> None:
        progress.update(task, completed=completed, total=total, done=done)

    with progress:
        yield update


def _no_progress(completed: float, total: float | None = None, done: str = "") -> None:
    """The update of a progress bar that is not shown."""
