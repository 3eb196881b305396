"""Command-line helpers that work without Pulumi (`python -m tools.render`)."""
