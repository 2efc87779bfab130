"""A local host for function_app.py: HTTP triggers and Durable orchestrations without Core Tools."""
