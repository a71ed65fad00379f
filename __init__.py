"""rq: raw audio-visual datasets -> cached WebDataset shards -> the RollingQ multimodal Transformer.

This folder is the installed `rq` package (pyproject.toml maps it): `rq.pipeline` (preprocessing),
`rq.train` (loading, training, evaluation, reports), `rq.manifests` (class lists) and `rq.cli` (the
`rq` command). The model itself is the separate top-level package `rollingq`. docs/architecture.md
shows how the parts fit together."""
__version__ = "0.2.0"
