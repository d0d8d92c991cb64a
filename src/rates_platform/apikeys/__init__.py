"""API keys of the public API: created, listed, revoked and expired by `rates keys`."""
