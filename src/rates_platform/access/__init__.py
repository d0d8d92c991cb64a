"""Access requests: people get database roles only through requests, approvals and expiry."""
