"""HTTP concerns shared by every capability: problems, observability, operations."""
