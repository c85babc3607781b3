"""Zero-shot detection: boxes for a text query (or an example) read out of the
collection's own CLIP (dense patch maps, picture regions, crop re-scoring)."""

from clipfind.search.detect.detector import MAX_QUERIES, Detection, DetectOptions, detect

__all__ = ["MAX_QUERIES", "DetectOptions", "Detection", "detect"]
