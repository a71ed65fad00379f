"""The loader's error type, in a module of its own so that settings code can name it without
importing the loader (torch, webdataset)."""


class DataError(Exception):
    """Shards that cannot be used as asked: the message is one line naming the file and the reason."""
    exit_code = 1


class ManifestError(DataError):
    """A manifest.json this rq cannot use (not an object, no splits, wrong types, shard names that are
    paths, URLs or commands): a usage error, like a bad option."""
    exit_code = 2
