"""Voice out: replies cut into sentences, synthesized and played."""
