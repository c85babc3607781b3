"""Search: queries, filters, ranking; zero-shot classification and detection live here
too, as queries against the same embedding space."""

from clipfind.search.engine import Hit, SearchPage, search, search_vector
from clipfind.search.filters import Filters, parse_date
from clipfind.search.query import Term, build_terms, parse_query, query_vector

__all__ = [
    "Filters", "Hit", "SearchPage", "Term", "build_terms", "parse_date", "parse_query",
    "query_vector", "search", "search_vector",
]
