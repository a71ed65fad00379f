"""What a trained model is worth: metrics (`metrics.py`), `rq eval` (`evaluate.py`), `rq predict` (`predict.py`)."""
