"""One conversation: history, the turn and tool loop, confirmations, transcripts, metrics."""
