"""The input side of training: shard sources (`source.py`), the tar reader (`tarstream.py`), one
sample's decode (`sample.py`, with the crops of `augment.py`) and the streaming loader (`loader.py`)."""
from rq.train.data.loader import (Batches, DataConfig, LoaderStats, eval_batches, shard_order, to_device,
                                  train_batches)
from rq.train.data.source import DataError, ShardSource, open_source

__all__ = ["ShardSource", "open_source", "DataConfig", "DataError", "LoaderStats", "Batches",
           "train_batches", "eval_batches", "to_device", "shard_order"]
