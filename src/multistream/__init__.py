"""multistream: multi-stream language models on any Hugging Face causal LM."""

import os

# The toolkit never fetches weights; without this, transformers and peft retry a hub for tens of seconds.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .streams import DEFAULT_LAYOUT, Layout, Stream
from .timeline import Segment, Timeline

__all__ = ["DEFAULT_LAYOUT", "Layout", "Segment", "Stream", "Timeline"]
__version__ = "0.1.0"
