"""The one error a broken tool declaration raises."""

from __future__ import annotations

from pathlib import Path


class ToolsFileError(Exception):
    """A tool declaration is invalid: the message names the file, the line and the fix."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = Path(path) if path is not None else None
        self.line = line
        self.reason = message
