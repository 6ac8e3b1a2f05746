"""One conversation: history, the tool-call loop, interruptions, context budget, metrics.

The public face of ``assistant.conversation``; the implementation is
``assistant.conversation.dialogue``.
"""

from assistant.conversation.dialogue import Dialogue
from assistant.conversation.settings import DialogueSettings

__all__ = ["Dialogue", "DialogueSettings"]
