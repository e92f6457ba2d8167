"""What a classifier predicts: its output classes and how data-set labels map onto them.

A :class:`TaskSpec` lists the output classes in logit order and maps every data-set label to one of
them. The identity mapping gives a multi-class task; merging labels gives e.g. the paper's binary task::

    TaskSpec(class_names=("normal", "abnormal"),
             mapping={"normal": "normal", "benign": "abnormal", "malignant": "abnormal"})

which :meth:`TaskSpec.preset` builds as ``TaskSpec.preset("binary", ["benign", "malignant", "normal"])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from samprompt.errors import ConfigError, DataError

__all__ = ["TaskPreset", "TaskSpec"]

TaskPreset = Literal["multiclass", "binary"]


class TaskSpec(BaseModel):
    """Output classes of a classifier and the mapping from data-set labels.

    Attributes:
        class_names: Output classes, in logit order (at least two, unique).
        mapping: Data-set label → class name. Empty means the identity on ``class_names`` (each label
            must then be one of them). Every value must be in ``class_names``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_names: tuple[str, ...] = Field(min_length=2)
    mapping: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique, got {list(self.class_names)}")
        unknown = sorted({v for v in self.mapping.values() if v not in self.class_names})
        if unknown:
            raise ValueError(f"mapping targets {unknown} are not in class_names {list(self.class_names)}")
        return self

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.class_names)

    def class_of(self, label: str) -> str:
        """Return the class name a data-set ``label`` maps to.

        Raises:
            DataError: If the label is not covered by the mapping (or is not a class, for the identity).
        """
        if self.mapping:
            if label not in self.mapping:
                raise DataError(
                    f"label {label!r} is not in the task mapping (labels: {sorted(self.mapping)})"
                )
            return self.mapping[label]
        if label not in self.class_names:
            raise DataError(f"label {label!r} is not one of the classes {list(self.class_names)}")
        return label

    def index(self, label: str | int) -> int:
        """Return the output index of a data-set label (a string) or check a class index (an int)."""
        if isinstance(label, bool):
            raise DataError(f"label must be a string or a class index, got {label!r}")
        if isinstance(label, int):
            if not 0 <= label < self.num_classes:
                raise DataError(f"class index {label} out of range for {self.num_classes} classes")
            return label
        return self.class_names.index(self.class_of(str(label)))

    def sources(self, class_name: str) -> list[str]:
        """Data-set labels that map to ``class_name`` (``[class_name]`` for the identity)."""
        if not self.mapping:
            return [class_name] if class_name in self.class_names else []
        return sorted(k for k, v in self.mapping.items() if v == class_name)

    @classmethod
    def preset(
        cls,
        name: TaskPreset,
        dataset_classes: Sequence[str],
        *,
        negative: str = "normal",
        positive: str = "abnormal",
    ) -> TaskSpec:
        """Build a standard task over a data set's labels.

        Args:
            name: ``"multiclass"`` (one output per data-set class, in the given order) or ``"binary"``
                (``negative`` stays ``negative``, every other label becomes ``positive``; outputs
                ``(negative, positive)``).
            dataset_classes: The data set's labels.
            negative: Label that stays negative in the binary task.
            positive: Name of the merged class in the binary task.

        Raises:
            ConfigError: Unknown preset, fewer than two classes, or no ``negative`` label for binary.
        """
        classes = list(dict.fromkeys(dataset_classes))
        if name == "multiclass":
            if len(classes) < 2:
                raise ConfigError(f"task: multiclass needs at least two data-set classes, got {classes}")
            return cls(class_names=tuple(classes))
        if name == "binary":
            if negative not in classes or len(classes) < 2:
                raise ConfigError(
                    f"task: binary needs the negative label {negative!r} and at least one other label, "
                    f"got {classes}"
                )
            mapping = {c: (negative if c == negative else positive) for c in classes}
            return cls(class_names=(negative, positive), mapping=mapping)
        raise ConfigError(f"task: unknown preset {name!r}; use 'multiclass' or 'binary'")
