"""The operators' review dashboard (`inspector serve`)."""

from inspector.web.app import create_app

__all__ = ["create_app"]
