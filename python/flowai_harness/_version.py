"""The package version; the native engine must report the same one (checked at import)."""

__version__ = "0.1.0"
