"""The errors that describe bad input from the user, as opposed to a bug in gazecxr.

Every command's ``main`` (through :func:`gazecxr.cli.options.run_main`) prints a :class:`UserError`
as one line, ``error: …``, and exits with its :attr:`~UserError.exit_code`; any other exception is a
bug and raises with its traceback. Each class also derives from the builtin type its callers catch
(``ValueError``, ``FileNotFoundError``, ``LookupError``), so library code and tests that catch those
keep working.
"""


class UserError(Exception):
    """A problem with what the user gave (a config, a file, a name), not with gazecxr; the message
    names the file, record or value and says what is wrong."""

    exit_code: int = 2
    """The exit status a command returns for this error."""


class ConfigError(UserError, ValueError):
    """A configuration that cannot be loaded or does not fit the schema."""


class InputError(UserError, ValueError):
    """Input data the user named that has the wrong format or content: a table, an image, an HDF5
    file, a checkpoint or weights file, a split file."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named (on the command line or in the config) does not exist."""


class UnknownReferenceError(UserError, LookupError):
    """A name the user gave that matches nothing: a preset, a registry entry or tag, a model,
    method, task or split name."""


class OutputExistsError(UserError, FileExistsError):
    """The output the user named already holds something the command will not overwrite."""


class MissingExtraError(UserError, ImportError):
    """The command needs an optional dependency that is not installed; the message names the extra."""


class UnavailableDeviceError(UserError, RuntimeError):
    """The device the user asked for (CUDA, an ONNX Runtime provider) is not available on this machine."""


class CheckFailedError(UserError, RuntimeError):
    """A check a command runs on what it made failed (an exported model that does not give its
    checkpoint's outputs): nothing was written; exit status 1."""

    exit_code = 1
