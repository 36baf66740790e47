"""Thin shells: the Functions triggers' handlers and the CLI. Parse, call one service, map the result."""
