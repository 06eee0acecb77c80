"""The plugin's tests use nvshim's opt-in pytest fixtures."""

pytest_plugins = ["nvshim.testing"]
