"""Package data (``clipfind.data``): prompt template sets and the reference model."""
