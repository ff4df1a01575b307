"""erucli: the Eru command-line client, over the Eru portal's REST API (requests + the standard library)."""

__version__ = "0.1.0"
