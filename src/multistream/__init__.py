"""multistream: multi-stream language models on any Hugging Face causal LM."""

from .streams import DEFAULT_LAYOUT, Layout, Stream
from .timeline import Segment, Timeline

__all__ = ["DEFAULT_LAYOUT", "Layout", "Segment", "Stream", "Timeline"]
__version__ = "0.1.0"
