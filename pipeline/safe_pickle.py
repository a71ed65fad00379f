"""A pickle reader for data files from elsewhere (MultiBench's `mosei_senti_data.pkl`), which refuses
to run anything.

`pickle.load` calls whatever functions a file names, so an untrusted pickle can run any command. This
unpickler resolves only the globals a pickle of numpy arrays needs: numpy's array and scalar
reconstructors (`_reconstruct`, `_frombuffer`, `scalar`, taken from numpy itself rather than imported
by the name the file gives, so pickles written by numpy 1 and numpy 2 both load) and the `ndarray` and
`dtype` classes; and, for protocol 0-2 pickles, which store bytes as `_codecs.encode(text, "latin1")`,
that one encoding. Lists, dicts, tuples, strings, bytes and numbers need no global. Anything else the
file asks for stops the load before it is called, with one line naming the global."""
import pickle
from pathlib import Path

import numpy as np

_ARRAY, _SCALAR = np.zeros(1), np.float64(0)
# What numpy's own pickles call, found from numpy's reduce methods (numpy 2 moved numpy.core to numpy._core).
_RECONSTRUCT = _ARRAY.__reduce__()[0]
_FROMBUFFER = _ARRAY.__reduce_ex__(5)[0]
_SCALAR_FN = _SCALAR.__reduce__()[0]


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol 0-2 pickles use it for bytes, and for nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedPickle(f"the pickle asks for _codecs.encode with {encoding!r}; only latin1 bytes are read")
    return text.encode("latin1")


ALLOWED = {
    **{(module, "_reconstruct"): _RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _SCALAR_FN for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _FROMBUFFER for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class RefusedPickle(Exception):
    """A pickle that asks for code it may not run, or that is not a readable pickle: one line."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickle(f"the pickle asks for {module}.{name}; only numpy arrays and dtypes, lists, dicts, "
                                "tuples, strings and numbers are read (nothing a pickle names is run)")
        return found


def load_data_pickle(path: Path) -> object:
    """The object in the pickle at `path`, built only from the allowed types; RefusedPickle otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            # latin1: arrays pickled by Python 2 carry their bytes as str (numpy's advice for such files)
            return _Restricted(f, encoding="latin1").load()
    except RefusedPickle as e:
        raise RefusedPickle(f"{path}: refused: {e}") from None
    except OSError as e:
        raise RefusedPickle(f"{path}: cannot read it ({e.strerror or e})") from None
    except Exception as e:   # truncated or not a pickle: UnpicklingError, EOFError, ValueError, ...
        text = " ".join(str(e).split())[:120]
        raise RefusedPickle(f"{path}: not a readable pickle ({type(e).__name__}: {text})") from None
