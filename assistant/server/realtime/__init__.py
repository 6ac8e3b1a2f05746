"""The OpenAI Realtime protocol: wire events, one session per connection, one response's events."""
