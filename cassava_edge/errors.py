"""One exception family, so that apps and the CLI can tell user errors from bugs."""

from __future__ import annotations


class CassavaEdgeError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ImageError(CassavaEdgeError):
    """An input that is not a usable image: names the source and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ModelError(CassavaEdgeError):
    """A model file that is missing, unreadable or does not follow the cassava-edge contract."""


class ProviderError(CassavaEdgeError):
    """An onnxruntime execution provider was asked for but could not be loaded."""


class SourceError(CassavaEdgeError):
    """A path, folder or pattern that names no photos (missing, empty, no match)."""


class OptionError(CassavaEdgeError, ValueError):
    """An option value the runtime does not know: a scan plan, TTA preset, provider, variant or colour order."""
