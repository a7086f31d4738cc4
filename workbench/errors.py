"""One error hierarchy. Only cli.py turns these into messages and exit codes.

Every message is one line that says what is wrong and how to fix it.
"""


class WorkbenchError(Exception):
    """Base class: a problem the user can fix (bad input, missing runtime, ...). Exit code 2."""

    exit_code = 2


class RecipeError(WorkbenchError):
    """The recipe (TOML or CLI options) is invalid."""


class SourceError(WorkbenchError):
    """A model, weights file or data source cannot be found or read."""


class TaskError(WorkbenchError):
    """A task (data set) is unknown or its data is malformed."""


class ExportError(WorkbenchError):
    """A model could not be exported to the requested format."""


class ParityError(ExportError):
    """An exported artifact's outputs differ from its source beyond tolerance."""

    def __init__(self, what: str, max_abs_diff: float, tolerance: float):
        self.max_abs_diff = float(max_abs_diff)
        self.tolerance = float(tolerance)
        super().__init__(
            f"{what}: exported outputs differ from PyTorch by max |diff| = {max_abs_diff:.3g} "
            f"(tolerance {tolerance:.3g}); check for train-mode layers or unsupported ops"
        )


class QuantizationError(WorkbenchError):
    """Quantization of an artifact failed."""


class RuntimeUnavailable(WorkbenchError):
    """A runtime named in the recipe is not installed."""


class MeasurementError(WorkbenchError):
    """A measurement worker crashed, hung, ran out of memory or returned garbage."""


class ArtifactError(WorkbenchError):
    """An artifact file is missing, corrupt or of the wrong format."""


class OutputError(WorkbenchError):
    """An output path cannot be written."""


class TrackingError(WorkbenchError):
    """Results could not be logged to an experiment tracker (MLflow missing, URI unreachable or refused)."""
