"""Adapters: the only modules that import Azure SDKs. Each implements a port in our words."""
