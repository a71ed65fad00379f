"""The trainer: settings (`config.py`), model and optimiser construction (`build.py`), one epoch's
passes (`epoch.py`), the run from first to last epoch (`fit.py`), checkpoints and the process group."""
