"""The /rates capability: average daily price between two locations."""
