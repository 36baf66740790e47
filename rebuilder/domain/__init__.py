"""The domain: pure and typed. No Azure SDK, no I/O, no clock; `now` is passed in."""
