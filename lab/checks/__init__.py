"""The health checks run on a running netns lab, and the report they make."""
