"""A local stand-in for Microsoft Graph and Teams calling (for now: request-body validation)."""
