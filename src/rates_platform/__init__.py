"""Rates Platform: average daily shipping prices between ports and regions."""
