"""Domain errors. Library code raises these; the CLI maps them to exit codes and the
HTTP API to status codes. Every message names the input and says what to do."""


class ClipfindError(Exception):
    """Base class for every error clipfind reports to a user."""

    exit_code = 1
    http_status = 400


class ModelLoadError(ClipfindError):
    """The model spec could not be loaded (unknown name, offline, bad checkpoint)."""

    exit_code = 3
    http_status = 503


class ModelMismatchError(ClipfindError):
    """A collection was opened with a model other than the one its vectors come from."""

    exit_code = 4
    http_status = 409


class ImageDecodeError(ClipfindError):
    """An image could not be decoded safely (corrupt, truncated, not an image, too big)."""

    exit_code = 5
    http_status = 422


class NotFoundError(ClipfindError):
    """An item, label set or job that does not exist."""

    exit_code = 6
    http_status = 404


class QueryError(ClipfindError):
    """A search, classification or detection request that cannot be answered as given."""

    exit_code = 2
    http_status = 422


class CollectionError(ClipfindError):
    """The collection's files or database are unusable (e.g. a missing indexing root)."""

    exit_code = 7
    http_status = 409


class FileChangedError(CollectionError):
    """An item's file is no longer the file that was indexed (replaced, or now a link
    to something else): it is not read or served until its folder is indexed again."""


class SchemaVersionError(CollectionError):
    """The catalog was written by a newer clipfind (a schema revision this code does not
    know): it is refused, untouched, rather than misread."""


class StorageError(CollectionError):
    """The catalog or index cannot be read or written now (damaged pages, disk full,
    read-only folder, database server unreachable): nothing further was written."""

    http_status = 503


class CollectionBusyError(CollectionError):
    """Another index run holds the collection's writer lock."""

    http_status = 409


class RemovalRefusedError(CollectionError):
    """An index run would remove items it has reason to doubt are gone (an emptied or
    remounted root, most of a root at once): nothing was removed."""


class ClusterError(ClipfindError):
    """A Ray cluster asked for (``clipfind index --ray``) cannot be used: Ray is not
    installed, no cluster is reachable at the address, or the run failed on it."""

    exit_code = 8
    http_status = 503
