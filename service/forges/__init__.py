"""Clients for the Git forges Shipline talks back to (pull requests), one module per forge."""
