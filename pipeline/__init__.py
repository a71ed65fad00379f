"""Raw audio-visual clips -> cached per-clip stages -> sharded WebDataset tars."""
