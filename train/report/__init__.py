"""`rq report`: run folders read (`runs.py`), the Markdown page (`page.py`) and its figures (`plots.py`)."""
