"""The indexer: walks a collection and brings the store up to date with it."""

from clipfind.indexer.run import IndexSummary, index_paths
from clipfind.indexer.walk import FileEntry, walk

__all__ = ["FileEntry", "IndexSummary", "index_paths", "walk"]
