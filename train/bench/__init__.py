"""`rq bench`: the input pipeline against a hand-written reference (`loader.py`), training steps (`training.py`)."""
