"""Training: the streaming shard loader (data.py), the trainer and evaluation."""
