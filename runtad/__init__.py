"""runtad: the root daemon that enforces per-sandbox egress allowlists."""

__version__ = "0.1.0"
