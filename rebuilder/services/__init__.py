"""Use cases: what triggers and the CLI ask for, written against the ports (no azure.*)."""
