"""Secure database access: login roles, their credentials and their rotation."""
