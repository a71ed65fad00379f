"""The loader's error type, in a module of its own so that settings code can name it without
importing the loader (torch, webdataset)."""


class DataError(Exception):
    """Shards that cannot be used as asked: the message is one line naming the file and the reason."""
