"""The input side of training: shard sources (`source.py`), the tar reader (`tarstream.py`), one
sample's decode (`sample.py`, with the crops of `augment.py`) and the streaming loader (`loader.py`).

Names are imported on first use, so reading a DataError or a ShardSource does not import torch."""
from importlib import import_module

_EXPORTS = {
    "Batches": "loader", "DataConfig": "loader", "LoaderStats": "loader", "eval_batches": "loader",
    "train_batches": "loader", "to_device": "loader", "shard_order": "loader", "INPUT_FIELDS": "loader",
    "model_inputs": "loader", "DataError": "errors", "ShardSource": "source", "open_source": "source",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rq.train.data' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
