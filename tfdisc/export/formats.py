"""The registry of export formats: one :class:`Format` entry per format.

An entry holds everything about a format that ``tfdisc.export`` needs: its
writer, the artifact's name in an export directory, its loader and the
runner behind :func:`tfdisc.export.predictor`, how to recognise its own
artifacts (so ``overwrite=True`` removes only those), the input dtypes and
``export()`` options its writer takes, and what it needs installed.
``tfdisc.export`` registers the built-in formats (``saved_model``,
``packed_saved_model``, ``tflite``, ``lce``) on import; adding a format is
one :func:`register` call::

    from tfdisc.export import formats

    formats.register(formats.Format(
        name="npz", file_name="weights.npz", write=write_npz, load=load_npz,
        runner=npz_runner, matches=lambda p: p.endswith(".npz"), owns=is_my_npz))

after which ``tfdisc.export.export(model, dir, ["npz"])``,
``tfdisc.export.load``/``predictor`` and ``--formats=npz`` /
``--export=npz`` of the command lines take it (a command line sees the
formats registered in its process before its flags are parsed).

This module imports nothing from TensorFlow: it is the base of the package.
"""
import collections.abc
import dataclasses
import os
import shutil
from typing import Callable, Optional, Tuple

__all__ = ["ExportDirError", "FILE_NAMES", "INPUT_DTYPES", "OPTIONS", "Format",
           "clear_export_dir", "for_path", "get", "names", "parse", "register", "unregister"]

#: Input dtypes an exported signature can take (see ``tfdisc.export``).
INPUT_DTYPES = ("float32", "uint8")
#: Keyword options of ``tfdisc.export.export`` that a format may pass on to its writer.
OPTIONS = ("float_weights",)


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
      name: What ``formats=[...]`` / ``--formats`` call it (no comma or space).
      file_name: The artifact's name inside an export directory (a file or a
        directory, no path separator).
      write: ``write(model, path, *, input_dtype, **options) -> path`` writes
        the artifact of a Keras model at `path`.
      load: ``load(path, *, allow_unsafe) -> artifact`` reads it back;
        ``tfdisc.export.load`` calls it for the paths `matches` accepts.
      runner: ``runner(artifact) -> (run, input dtype, input shape)``: a
        ``numpy -> numpy logits`` function of a loaded artifact, the
        ``np.dtype`` its input takes and its input shape without the batch
        dimension (``tfdisc.export.predictor`` checks inputs against them).
      matches: ``matches(path) -> bool``: whether an existing `path` looks
        like this format's artifact (by its name or layout: cheap, and
        without judging the content, which `load` does).
      owns: ``owns(path) -> bool``: whether `path` is an artifact this
        format's writer wrote, so that ``overwrite=True`` may remove it (a
        user's file of the same name is never removed).
      input_dtypes: The ``input_dtype`` values the writer supports.
      options: The keyword options of ``tfdisc.export.export`` the writer
        takes (from :data:`OPTIONS`).
      requires: Called with no argument before anything is exported; raises
        an ImportError naming the missing extra (e.g. ``tfdisc[lce]``).
      description: One line for listings.
    """

    name: str
    file_name: str
    write: Callable
    load: Callable
    runner: Callable
    matches: Callable
    owns: Callable
    input_dtypes: Tuple[str, ...] = INPUT_DTYPES
    options: Tuple[str, ...] = ()
    requires: Optional[Callable] = None
    description: str = ""

    def __post_init__(self):
        where = f"tfdisc.export.formats.Format({self.name!r})"
        if not isinstance(self.name, str) or not self.name or any(
                c in self.name for c in ", \t\n"):
            raise ValueError(f"{where}: `name` must be a non-empty string without commas or "
                             "spaces (a --formats list splits on commas).")
        if (not isinstance(self.file_name, str) or self.file_name in ("", ".", "..")
                or os.sep in self.file_name or "/" in self.file_name):
            raise ValueError(f"{where}: `file_name` must be a plain file or directory name, "
                             f"got {self.file_name!r}.")
        for field in ("write", "load", "runner", "matches", "owns"):
            if not callable(getattr(self, field)):
                raise TypeError(f"{where}: `{field}` must be callable, got "
                                f"{getattr(self, field)!r}.")
        if self.requires is not None and not callable(self.requires):
            raise TypeError(f"{where}: `requires` must be callable or None.")
        object.__setattr__(self, "input_dtypes", tuple(self.input_dtypes))
        object.__setattr__(self, "options", tuple(self.options))
        if not self.input_dtypes or any(d not in INPUT_DTYPES for d in self.input_dtypes):
            raise ValueError(f"{where}: `input_dtypes` must be a non-empty subset of "
                             f"{INPUT_DTYPES}, got {self.input_dtypes}.")
        bad = [o for o in self.options if o not in OPTIONS]
        if bad:
            raise ValueError(f"{where}: unknown option(s) {bad}; tfdisc.export.export "
                             f"passes on {OPTIONS}.")


_REGISTRY = {}


class ExportDirError(ValueError):
    """The export directory holds another export (or something in its place)."""


def register(fmt, *, replace=False):
    """Adds `fmt` (a :class:`Format`) to the registry and returns it.

    Raises:
      TypeError: `fmt` is not a Format.
      ValueError: a format of that name, or one writing the same file name,
        is registered already (pass ``replace=True`` to replace the one of
        the same name).
    """
    if not isinstance(fmt, Format):
        raise TypeError(f"tfdisc.export.formats.register takes a Format, got {fmt!r}.")
    if fmt.name in _REGISTRY and not replace:
        raise ValueError(f"Export format {fmt.name!r} is registered already; pass "
                         "replace=True to replace it.")
    clash = [f.name for f in _REGISTRY.values()
             if f.file_name == fmt.file_name and f.name != fmt.name]
    if clash:
        raise ValueError(f"Export format {fmt.name!r}: file name {fmt.file_name!r} is the "
                         f"artifact of {clash[0]!r} already; one export directory holds both.")
    _REGISTRY[fmt.name] = fmt
    return fmt


def unregister(name):
    """Removes the format `name` (a KeyError naming the registered ones if there is none)."""
    get(name)
    del _REGISTRY[name]


def get(name):
    """The :class:`Format` called `name`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"Unknown export format {name!r}; registered: "
                       f"{', '.join(_REGISTRY)}.") from None


def names():
    """Names of every registered format, in registration order."""
    return tuple(_REGISTRY)


def parse(formats):
    """A list of format names from a list or a comma-separated string.

    Raises:
      ValueError: an unregistered name (the message lists the registered
        ones), or no name at all.
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(formats)
    unknown = [f for f in formats if f not in _REGISTRY]
    if unknown or not formats:
        raise ValueError(f"Unknown export format(s) {unknown or formats!r}; "
                         f"choose from {', '.join(_REGISTRY)}.")
    return formats


def for_path(path):
    """The first registered format whose ``matches(path)`` is true, or None."""
    for fmt in _REGISTRY.values():
        if fmt.matches(path):
            return fmt
    return None


class _FileNames(collections.abc.Mapping):
    """``{format: artifact name in an export directory}`` of every registered format."""

    def __getitem__(self, name):
        return _REGISTRY[name].file_name

    def __iter__(self):
        return iter(tuple(_REGISTRY))

    def __len__(self):
        return len(_REGISTRY)

    def __repr__(self):
        return repr(dict(self))


#: ``{format: artifact name in an export directory}`` of every registered format: a live view
#: of the registry (re-exported as ``tfdisc.export.FILE_NAMES``).
FILE_NAMES = _FileNames()


def clear_export_dir(output_dir, overwrite):
    """Refuses an `output_dir` holding an export; with `overwrite`, removes that export's files.

    An export is any artifact of a registered format (its ``file_name``);
    `overwrite` removes only artifacts their format ``owns`` and refuses
    (removing nothing) when one is a file of the same name it does not own.

    Raises:
      ExportDirError: as above, or `output_dir` is not a directory.
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ExportDirError(f"Export directory {output_dir!r} exists and is not a directory.")
    existing = {fmt: os.path.join(output_dir, fmt.file_name)
                for fmt in _REGISTRY.values()
                if os.path.lexists(os.path.join(output_dir, fmt.file_name))}
    if not existing:
        return
    listed = ", ".join(os.path.basename(p) for p in existing.values())
    if not overwrite:
        raise ExportDirError(
            f"Export directory {output_dir!r} already holds an export ({listed}); a new export "
            "there would leave the old artifacts beside the new ones. Choose another "
            "directory, or pass overwrite=True (--overwrite) to remove that export first.")
    foreign = [p for fmt, p in existing.items() if not fmt.owns(p)]
    if foreign:
        raise ExportDirError(
            f"Export directory {output_dir!r}: {', '.join(foreign)} has the name of an export "
            "artifact but was not written by tfdisc.export; it is not removed. Move it away "
            "or choose another directory.")
    for path in existing.values():
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
