"""The :class:`Prompt` value type, the :class:`PromptStrategy` base class and its :class:`Emits` flags.

Coordinates: every prompt is in ORIGINAL-image pixels. Boxes are ``(x0, y0, x1, y1)`` pixel edges
(see :mod:`samprompt.regions`); points are ``(x, y)`` with pixel ``(col, row)`` having its centre at
``(col + 0.5, row + 0.5)``; ``mask_logits`` is an (H, W) float32 map at the original size (positive =
foreground), which a segmenter resizes to whatever its decoder expects (SAM: 256 x 256 logits).
"""

from __future__ import annotations

import abc
import enum
import inspect
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, ClassVar, cast

import numpy as np
from numpy.typing import NDArray

from samprompt._arrays import as_bool_mask, as_cam, as_image
from samprompt.component import Component, P_co

__all__ = ["Emits", "Prompt", "PromptStrategy"]


def _frozen(arr: NDArray[Any]) -> NDArray[Any]:
    arr = np.array(arr, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class Prompt:
    """A prompt for a promptable segmenter, in original-image pixels.

    Attributes:
        box: (4,) float32 ``x0, y0, x1, y1`` with ``x0 <= x1`` and ``y0 <= y1``, or ``None``.
        points: (N, 2) float32, x then y; (0, 2) when there are no points.
        point_labels: (N,) int64, 1 = foreground, 0 = background.
        mask_logits: Optional (H, W) float32 dense prompt at the original image size.

    Raises:
        ValueError: On construction, naming the field whose shape or values are wrong.

    Example:
        >>> p = Prompt(box=[10, 20, 50, 60], points=[[30, 40]], point_labels=[1])
        >>> p.box.tolist(), p.points.shape, p.point_labels.tolist()
        ([10.0, 20.0, 50.0, 60.0], (1, 2), [1])
    """

    box: NDArray[np.float32] | None = None
    points: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0,), np.int64))
    mask_logits: NDArray[np.float32] | None = None

    def __init__(
        self,
        box: NDArray[Any] | Sequence[float] | None = None,
        points: NDArray[Any] | Sequence[Sequence[float]] | None = None,
        point_labels: NDArray[Any] | Sequence[int] | None = None,
        mask_logits: NDArray[Any] | None = None,
    ) -> None:
        # Arrays or (nested) lists in, so ``Prompt(box=[...])`` type-checks; validated arrays out.
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "points", np.zeros((0, 2), np.float32) if points is None else points)
        labels = np.zeros((0,), np.int64) if point_labels is None else point_labels
        object.__setattr__(self, "point_labels", labels)
        object.__setattr__(self, "mask_logits", mask_logits)
        self.__post_init__()

    def __post_init__(self) -> None:
        box = self.box
        if box is not None:
            box = np.asarray(box, dtype=np.float32)
            if box.shape != (4,):
                raise ValueError(f"Prompt.box must have shape (4,) (x0, y0, x1, y1), got {box.shape}")
            if not np.all(np.isfinite(box)):
                raise ValueError(f"Prompt.box must be finite, got {box.tolist()}")
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"Prompt.box must satisfy x0 <= x1 and y0 <= y1, got {box.tolist()}")
            object.__setattr__(self, "box", _frozen(box))
        points = np.asarray(self.points, dtype=np.float32)
        if points.size == 0:
            points = points.reshape(0, 2)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"Prompt.points must have shape (N, 2) (x, y), got {points.shape}")
        if not np.all(np.isfinite(points)):
            raise ValueError("Prompt.points must be finite")
        labels_in = np.asarray(self.point_labels)
        if (labels_in.size and not np.issubdtype(labels_in.dtype, np.integer) and labels_in.dtype != np.bool_
                and not np.all(np.equal(np.mod(labels_in, 1), 0))):
            raise ValueError("Prompt.point_labels must be integers (1 foreground, 0 background)")
        labels = labels_in.astype(np.int64).reshape(-1) if labels_in.size else np.zeros((0,), np.int64)
        if labels.shape != (points.shape[0],):
            raise ValueError(
                f"Prompt.point_labels must have shape ({points.shape[0]},) to match points, "
                f"got {labels_in.shape}"
            )
        if labels.size and not np.all((labels == 0) | (labels == 1)):
            raise ValueError(f"Prompt.point_labels must be 0 or 1, got {sorted(set(labels.tolist()))}")
        object.__setattr__(self, "points", _frozen(points))
        object.__setattr__(self, "point_labels", _frozen(labels))
        if self.mask_logits is not None:
            logits = np.asarray(self.mask_logits, dtype=np.float32)
            if logits.ndim != 2:
                raise ValueError(f"Prompt.mask_logits must have shape (H, W), got {logits.shape}")
            object.__setattr__(self, "mask_logits", _frozen(logits))
        if box is None and points.shape[0] == 0 and self.mask_logits is None:
            raise ValueError("Prompt needs at least one of box, points or mask_logits")

    def check_within(self, height: int, width: int, *, name: str = "prompt") -> None:
        """Check that the prompt lies on an image of ``height`` x ``width`` pixels.

        Boxes must lie within ``[0, W] x [0, H]`` and points within the same range (edges included), and a
        dense ``mask_logits`` must be (H, W).

        Raises:
            ValueError: Naming ``name`` and the offending field and values.
        """
        if self.box is not None:
            x0, y0, x1, y1 = (float(v) for v in self.box)
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise ValueError(f"{name}.box {[x0, y0, x1, y1]} lies outside the {width}x{height} image")
        if self.points.size:
            xs, ys = self.points[:, 0], self.points[:, 1]
            bad = (xs < 0) | (ys < 0) | (xs > width) | (ys > height)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{name}.points[{i}] {self.points[i].tolist()} lies outside the {width}x{height} image"
                )
        if self.mask_logits is not None and self.mask_logits.shape != (height, width):
            raise ValueError(
                f"{name}.mask_logits has shape {self.mask_logits.shape}, expected the image's ({height}, {width})"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists of floats/ints). ``mask_logits`` is summarised by its shape only."""
        return {
            "box": None if self.box is None else [float(v) for v in self.box],
            "points": self.points.tolist(),
            "point_labels": self.point_labels.tolist(),
            "mask_logits_shape": None if self.mask_logits is None else list(self.mask_logits.shape),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        def same(a: Any, b: Any) -> bool:
            return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
        return (
            same(self.box, other.box)
            and same(self.points, other.points)
            and same(self.point_labels, other.point_labels)
            and same(self.mask_logits, other.mask_logits)
        )

    __hash__ = None  # type: ignore[assignment]


class Emits(enum.Flag):
    """What a strategy's prompts carry, declared on the class as :attr:`PromptStrategy.emits`.

    Combine with ``|``: ``Emits.BOX | Emits.POINTS`` for a box plus points. :attr:`POINTS` means at
    least one POSITIVE point (negative points may come with it). The runner reads the declaration to score
    an image without a prompt as a miss on exactly the geometry the strategy would have given.

    Example:
        >>> Emits.BOX in (Emits.BOX | Emits.POINTS), Emits.POINTS in Emits.BOX
        (True, False)
    """

    BOX = enum.auto()  #: a ``box``
    POINTS = enum.auto()  #: at least one positive point
    MASK = enum.auto()  #: dense ``mask_logits``


#: Removal of the deprecated strategy contract (``make_prompt(mask, cam)``, ``uses_image``, ``__call__``).
_REMOVAL = "samprompt 0.3"


def _own_make_prompt_takes_image(cls: type[PromptStrategy]) -> bool:
    """Whether ``cls.make_prompt`` accepts ``image`` (as a named parameter or through ``**kwargs``)."""
    try:
        params = inspect.signature(cls.make_prompt).parameters
    except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
        return True
    return "image" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_ABC_FILE = abc.ABCMeta.__new__.__code__.co_filename


def _deprecated(message: str) -> None:
    """Warn, attributed to the class statement being executed (the first frame outside this module and
    :mod:`abc`, whose ``ABCMeta.__new__`` runs ``__init_subclass__``)."""
    level, frame = 1, cast("FrameType | None", sys._getframe(1))
    while frame is not None and frame.f_code.co_filename in (__file__, _ABC_FILE):
        level, frame = level + 1, frame.f_back
    warnings.warn(f"{message} (the old form stops working in {_REMOVAL})", DeprecationWarning,
                  stacklevel=level + 1)


class PromptStrategy(Component[P_co], abc.ABC):
    """Turns a pseudo mask (and its CAM, and optionally the image) into a :class:`Prompt`.

    A strategy implements ONE method, :meth:`make_prompt`, and declares two class attributes:
    :attr:`emits` (what its prompts carry) and :attr:`needs_image` (whether it looks at the image). Its
    parameters are a :class:`~samprompt.component.ComponentParams` model given as the generic argument,
    ``class MyBox(PromptStrategy[MyBoxParams])``, read as ``self.params``.

    Calling the strategy validates the inputs and then calls :meth:`make_prompt`. The same strategy also
    runs on a ground-truth mask (pass the mask as ``pseudo_mask`` and, when no CAM exists, the mask as
    float as ``cam``), which is how the ground-truth-prompt baseline is built.

    Deprecated (still working, with a :class:`DeprecationWarning`, until samprompt 0.3): a two-argument
    ``make_prompt(mask, cam)``, the class attribute ``uses_image`` (now :attr:`needs_image`), and
    overriding ``__call__`` instead of implementing :meth:`make_prompt`. A strategy that does not declare
    :attr:`emits` is taken to emit a box and points (also with a warning).
    """

    #: What the prompts carry: :attr:`Emits.BOX`, :attr:`Emits.POINTS`, :attr:`Emits.MASK` or a
    #: combination. Declare it on the class; when it depends on the parameters, assign ``self.emits`` in
    #: ``__init__`` after ``super().__init__(**params)``.
    emits: Emits = Emits.BOX | Emits.POINTS

    #: Whether :meth:`make_prompt` looks at the image. Only then does it receive ``image``; otherwise
    #: ``image`` is always ``None`` (so the pipeline need not hand images to it).
    needs_image: ClassVar[bool] = False

    #: Deprecated alias of :attr:`needs_image` (kept in step with it; reading it still works).
    uses_image: ClassVar[bool] = False

    # Whether the class's make_prompt takes ``image`` (false for the deprecated two-argument form).
    _takes_image: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        name = cls.__qualname__
        if "uses_image" in own and "needs_image" not in own:
            _deprecated(f"{name}.uses_image is deprecated: declare the class attribute needs_image instead")
            cls.needs_image = bool(own["uses_image"])
        cls.uses_image = cls.needs_image
        if "make_prompt" in own:
            cls._takes_image = _own_make_prompt_takes_image(cls)
            if not cls._takes_image:
                _deprecated(
                    f"{name}.make_prompt(mask, cam) is deprecated: implement "
                    "make_prompt(self, mask, cam, image=None) (image: (H, W, 3) uint8 or None)"
                )
        if "__call__" in own:
            _deprecated(
                f"{name} overrides __call__, which is deprecated: implement "
                "make_prompt(self, mask, cam, image=None) instead (calling the strategy validates the inputs)"
            )
        if "emits" in own and not isinstance(own["emits"], Emits):
            raise TypeError(f"{name}.emits must be an Emits flag (e.g. Emits.BOX | Emits.POINTS), "
                            f"got {own['emits']!r}")
        below = cls.__mro__[: cls.__mro__.index(PromptStrategy)]
        if not inspect.isabstract(cls) and not any("emits" in k.__dict__ for k in below):
            _deprecated(
                f"{name} does not declare what it emits: set the class attribute emits "
                "(Emits.BOX, Emits.POINTS or Emits.BOX | Emits.POINTS); taken as box and points until then"
            )

    def __call__(self, pseudo_mask: Any, cam: Any, image: Any = None) -> Prompt | None:
        """Build a prompt.

        Args:
            pseudo_mask: (H, W) bool, the foreground proposed by a pseudo masker (or a ground truth).
            cam: (H, W) float32 in [0, 1] at the same size (NaN treated as 0).
            image: Optional original image, (H, W) or (H, W, 3) uint8 at the same size; passed on only to
                strategies whose :attr:`needs_image` is true.

        Returns:
            A :class:`Prompt` in original-image pixels, or ``None`` when no prompt can be made (for
            example an empty mask).

        Raises:
            ValueError: If the arrays are not 2-D or their shapes differ.
        """
        mask, cam_arr, img = self.check_inputs(pseudo_mask, cam, image if self.needs_image else None)
        return self.make_checked(mask, cam_arr, img)

    @staticmethod
    def check_inputs(
        pseudo_mask: Any, cam: Any, image: Any = None
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32], NDArray[np.uint8] | None]:
        """Validate a strategy's inputs once, for any number of strategies (what calling one does first).

        Args:
            pseudo_mask: (H, W) mask, non-zero = foreground.
            cam: (H, W) numeric CAM (NaN becomes 0, values are clipped to [0, 1]).
            image: Optional (H, W) or (H, W, 1|3|4) image at the same size.

        Returns:
            ``(mask, cam, image)``: (H, W) bool, (H, W) float32 in [0, 1] and (H, W, 3) uint8 or ``None``,
            each possibly the caller's own array (never a copy when it is already valid).

        Raises:
            ValueError: If the arrays are not 2-D or their shapes differ.
        """
        mask = as_bool_mask(pseudo_mask, "pseudo_mask")
        cam_arr = as_cam(cam, "cam")
        if mask.shape != cam_arr.shape:
            raise ValueError(f"pseudo_mask shape {mask.shape} differs from cam shape {cam_arr.shape}")
        img = None
        if image is not None:
            img = as_image(image)
            if img.shape[:2] != mask.shape:
                raise ValueError(f"image shape {img.shape[:2]} differs from pseudo_mask shape {mask.shape}")
        return mask, cam_arr, img

    def make_checked(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        """:meth:`make_prompt` on inputs already returned by :meth:`check_inputs` (``image`` is handed on
        only when :attr:`needs_image` is true). The pipeline validates an image's inputs once and calls this
        for each of its strategies whose class does not override ``__call__``."""
        if not self._takes_image:  # the deprecated two-argument make_prompt
            return self.make_prompt(mask, cam)
        return self.make_prompt(mask, cam, image=image if self.needs_image else None)

    @abc.abstractmethod
    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        """Build the prompt from validated inputs: the one method a strategy implements.

        Args:
            mask: (H, W) bool pseudo mask (or ground-truth mask), read-only in a pipeline.
            cam: (H, W) float32 CAM in [0, 1] at the same size, read-only in a pipeline.
            image: (H, W, 3) uint8 RGB original image when the class declares :attr:`needs_image`
                (and the caller has one), else ``None``.

        Returns:
            A :class:`Prompt` in original-image pixels (boxes ``(x0, y0, x1, y1)`` pixel edges, points
            ``(x, y)``), carrying what :attr:`emits` declares, or ``None`` when no prompt can be made.
        """
