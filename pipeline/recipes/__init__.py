"""Dataset recipes: each turns a raw download folder into a `Discovery` (clips with split and label,
the class list, and every file or annotation that could not be matched). One module per layout;
what they share is in `layout.py`."""
from rq.pipeline.recipes import cremad, folder, kinetics, webdataset
from rq.pipeline.recipes.layout import LayoutError, RecipeOptions

RECIPES = {"kinetics": kinetics, "cremad": cremad, "folder": folder, "wds": webdataset}

__all__ = ["RECIPES", "LayoutError", "RecipeOptions", "cremad", "folder", "kinetics", "webdataset"]
