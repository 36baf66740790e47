"""The local Azure stack (dev-only, never deployed): Azurite and the ARM simulator."""
