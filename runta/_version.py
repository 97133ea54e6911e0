"""Version of the runta SDK and CLI, kept equal to the project version in pyproject.toml."""

__version__ = "0.1.0"
