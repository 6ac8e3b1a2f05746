"""Tools the model can call: ``tools.yaml``, the registry, handler kinds and the plugin API.

Plugin authors need only ``tool`` (and ``ToolContext`` for announcements and background tasks);
the assistant uses ``load_tools`` and ``ToolRegistry``.
"""

from assistant.tools.context import ToolContext
from assistant.tools.decorator import ToolDefinition, tool, tool_definition
from assistant.tools.errors import ToolsFileError
from assistant.tools.loader import load_configured_tools, load_tools, tools_file_to_use
from assistant.tools.plugins import ENTRY_POINT_GROUP, installed_plugins
from assistant.tools.registry import ToolRegistry
from assistant.tools.spec import ToolSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "ToolContext",
    "ToolDefinition",
    "ToolRegistry",
    "ToolSpec",
    "ToolsFileError",
    "installed_plugins",
    "load_configured_tools",
    "load_tools",
    "tool",
    "tool_definition",
    "tools_file_to_use",
]
