"""clipfind: self-hosted contrastive search for images (shared foundations).

This package holds what every shell and feature builds on: settings, errors, the
open_clip encoder, safe image decoding and the store (catalog + FAISS index).
"""

__version__ = "0.1.0"
