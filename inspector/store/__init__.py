"""Persistence: the schema, sessions and every query. No torch here."""
