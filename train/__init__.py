"""Training: the data loader (`data/`), the trainer (`trainer/`), evaluation and prediction
(`evaluation/`), reports (`report/`), benchmarks (`bench/`), and `demo.py`, the one module that joins
preprocessing, training and the report."""
