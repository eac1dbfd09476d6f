"""Data sets as in-memory uint8 tensors plus a :class:`DataSpec`.

``load_dataset(name)`` returns a :class:`Dataset` whose images are uint8 ``[N, C, H, W]``
in raw pixel space (0..255) and whose labels are int64 ``[N]``. Normalisation happens on
the fly with ``spec.normalize(x)``, so masking and imputation (ROAR, SGT, SMOOT) can work
in raw pixel space.

Where files are looked for, in order (the first place holding every file wins):

1. the ``data_dir`` argument: the folder holding the files, or a parent with a
   ``<name>/`` subfolder (also ``MNIST/raw``-style torchvision layouts);
2. the ``SALIENCYLAB_DATA`` environment variable, same rule (several folders may be
   joined with ``os.pathsep``);
3. the user cache ``$XDG_CACHE_HOME/saliencylab/<name>/`` (default ``~/.cache``);
4. system folders (``/usr/share/datasets/fashion-mnist`` from Debian's
   ``dataset-fashion-mnist`` package).

When nothing is found and ``download`` is true, the files are fetched into the user cache
(temp file, md5 check, then rename). Every problem the user can fix becomes a one-line
:class:`~saliencylab.core.errors.UserError`.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from .cifar import load_cifar
from .digits import load_digits
from .files import MD5, SYSTEM_DIRS, URLS, cache_dir
from .idx import load_idx, read_idx
from .options import DataOptions
from .planted import load_planted
from .sources import check_source, load_source, run_label, source_of
from .spec import DATASETS, Dataset, DataSpec, display_name

__all__ = ["DATASETS", "DataOptions", "DataSpec", "Dataset", "MD5", "SYSTEM_DIRS", "URLS",
           "cache_dir", "check_dataset", "display_name", "load_dataset", "read_idx", "run_label"]

_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
    options: DataOptions = DataOptions(),
) -> Dataset:
    """Load a data set by name (see ``DATASETS``), or from your files: ``folder:PATH`` (an
    ImageFolder tree) or ``npz:FILE`` (arrays), read as ``options`` (the ``data.*`` keys) say.

    ``data_dir`` is the folder holding a built-in data set's files or a parent with a
    ``<name>/`` subfolder; then ``SALIENCYLAB_DATA``, the user cache and system folders are
    tried. Missing files are downloaded into the user cache when ``download`` is true.
    """
    if source_of(name) is not None:
        return load_source(name, options, progress)
    check_dataset(name, options)
    key = _builtin(name)
    if key == "digits":
        return load_digits()
    if key == "planted":
        return load_planted()
    if key in ("mnist", "fashion-mnist"):
        return load_idx(key, data_dir, download, progress)
    return load_cifar(key, data_dir, download, progress)


def _builtin(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise UserError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}, or "
                        f"your files as folder:PATH or npz:FILE")
    return key


def check_dataset(name: str, options: DataOptions = DataOptions()) -> None:
    """Config validation of the `dataset` and `data.*` keys: a one-line UserError unless `name`
    is a built-in data set (with data.* at its defaults) or an existing folder:/npz: source."""
    if source_of(name) is not None:
        check_source(name, options)
        return
    _builtin(name)
    if options != DataOptions():
        raise UserError(f"the data.* keys apply to folder: and npz: data sets, not to {name!r}")
