"""One conversation: history, the tool-call loop, interruptions, context budget, metrics.

The public face of ``assistant.conversation``; the implementation is
``assistant.conversation.dialogue``.
"""

from assistant.config import DialogueSettings
from assistant.conversation.dialogue import Dialogue

__all__ = ["Dialogue", "DialogueSettings"]
