"""Probes: the functions the sandboxed child runs on a student's package.

The child calls ``probe(pkg, inputs, **params)``: ``pkg`` is the hybrid ``faster_rcnn``
package (the student's modules under test plus reference copies of their dependencies),
``inputs`` a ``dict[str, Tensor]`` of CPU tensors sent by the hidden check, ``params``
JSON-able keyword arguments. A probe returns a flat ``dict[str, Tensor]`` of CPU tensors;
metadata comes as 0-d int64 tensors under ``meta.*`` keys (``meta.device_ok``: every
output was on the inputs' device; ``meta.inputs_modified``: an input tensor was changed
in place; ``meta.library_calls``: library box ops were called).

Isolation ("each bug costs points once"): a probe runs only the TODO under test. The RPN
probes replace the prediction network by a :class:`Replay` of fixed predictions and the
module global ``sample_rpn_training`` by :func:`deterministic_sampler`; the FasterRCNN
probes (:mod:`autograder.sandboxed.probes_detector`) give the detector a replay backbone and a replay
RPN. Modules get the reference's weights by parameter name (:func:`load_weights`).

This module is trusted code that runs beside student code, and is also imported by the
grader (for :func:`deterministic_sampler`): it imports only torch, torchvision and the
standard library.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from rcnn_kit.devices import resolve_device  # the one device resolver (runtime package, in the harness)

#: Multiplier of the integer hash that orders sampling candidates (Knuth's 2^32 / phi).
_HASH_MULTIPLIER = 2654435761
_HASH_MODULUS = 2**32

#: Keys of weight tensors in a probe's inputs: ``"w.<parameter name>"``.
WEIGHT_PREFIX = "w."


class ProbeError(Exception):
    """A problem a probe detected in the student's code; the message is student-safe.

    Args:
        message: the text (shown only where the child holds no reference code).
        code: a category of the child's fixed enum (``child.ERROR_CATEGORIES``), e.g.
            ``"param_shape"``, so the grader can compose its own message.
        details: short structured facts for that message: a reference parameter name,
            a shape as a list of ints (checked again by the grader against what it sent).
    """

    def __init__(self, message: str, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = dict(details or {})


# ----------------------------------------------------------------------------------------
# Shared helpers (also used by the grader on the reference)
# ----------------------------------------------------------------------------------------


def deterministic_sampler(
    gt_boxes: Tensor, num_samples: int, fg_fraction: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Drop-in for ``rpn.sample_rpn_training`` that picks the same anchors whatever the call order.

    Foreground rows have class >= 0, background rows are all -1 (neutral rows, -1e8, are
    never sampled). Candidates are ranked by a fixed integer hash of their index, so the
    choice depends only on the matched rows, not on random state or on how many times it
    was called before.

    Args:
        gt_boxes: Tensor[R, 5] matched GT rows (x1, y1, x2, y2, class).
        num_samples: total number of rows to sample.
        fg_fraction: at most this fraction of the samples are foreground.
        generator: ignored (accepted for signature compatibility).

    Returns:
        (fg_idx, bg_idx): Tensor[F] and Tensor[Bg] int64 indices into ``gt_boxes``, each sorted.
    """
    foreground = (gt_boxes[:, 4] >= 0).nonzero().squeeze(1)  # (F_all,)
    background = (gt_boxes[:, 4] == -1).nonzero().squeeze(1)  # (Bg_all,)
    num_fg = min(int(num_samples * fg_fraction), foreground.numel())
    num_bg = min(num_samples - num_fg, background.numel())

    def pick(candidates: Tensor, count: int) -> Tensor:
        priority = (candidates.cpu() + 1) * _HASH_MULTIPLIER % _HASH_MODULUS  # (n,)
        chosen = candidates[torch.argsort(priority, stable=True)[:count].to(candidates.device)]
        return torch.sort(chosen).values

    return pick(foreground, num_fg), pick(background, num_bg)


def group(inputs: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """``{key: tensor}`` for the entries ``"<prefix>.<key>"`` of ``inputs`` (insertion order kept)."""
    start = prefix + "."
    return {name[len(start):]: value for name, value in inputs.items() if name.startswith(start)}


def flatten(name: str, value: Any, out: dict[str, Tensor]) -> None:
    """Flatten a tensor / dict / list / tuple output into ``out`` with dotted keys."""
    if isinstance(value, Tensor):
        out[name] = value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            flatten(f"{name}.{key}", item, out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            flatten(f"{name}.{index}", item, out)
    else:
        raise ProbeError(f"{name}: expected tensors (or dicts/lists of tensors), got {type(value).__name__}")


def _require_tensors(outputs: Mapping[str, Any]) -> None:
    """Raise :class:`ProbeError` naming an output that is not a tensor (e.g. a loss as a float)."""
    for name, value in outputs.items():
        if not isinstance(value, Tensor):
            raise ProbeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")


def _finish(outputs: dict[str, Tensor], device: torch.device, modified: bool = False) -> dict[str, Tensor]:
    """Move outputs to the CPU, adding ``meta.device_ok`` and ``meta.inputs_modified``."""
    _require_tensors(outputs)
    device_ok = all(t.device.type == device.type for t in outputs.values())
    result = {name: t.detach().cpu() for name, t in outputs.items()}
    result["meta.device_ok"] = torch.tensor(int(device_ok))
    result["meta.inputs_modified"] = torch.tensor(int(modified))
    return result


def load_weights(module: nn.Module, weights: Mapping[str, Tensor], what: str, prefixes: tuple[str, ...] = ("",)) -> None:
    """Copy reference weights into a student's module by parameter name.

    Only the student's parameters and buffers under ``prefixes`` take part. When the names
    differ but the student's tensors have exactly the reference's shapes in the same order
    (e.g. layers named differently), the weights are copied by position instead.

    Args:
        module: the student's module.
        weights: ``{parameter name: Tensor}`` from the reference's ``state_dict``.
        what: the class name, for messages.
        prefixes: only names starting with one of these are compared.

    Raises:
        ProbeError: a parameter is missing, has another shape, or the student has an extra one.
    """
    own = {n: t for n, t in module.state_dict(keep_vars=True).items() if n.startswith(prefixes)}
    if list(own) != list(weights):
        own_shapes = [tuple(t.shape) for t in own.values()]
        ref_shapes = [tuple(t.shape) for t in weights.values()]
        if own_shapes == ref_shapes:  # same layers, other names: copy by position
            with torch.no_grad():
                for target, source in zip(own.values(), weights.values()):
                    target.copy_(source)
            return
    for name, source in weights.items():
        if name not in own:
            raise ProbeError(
                f"{what} has no parameter '{name}' (shape {tuple(source.shape)}); check the layer structure",
                "param_missing", {"owner": what, "param": name},
            )
        if own[name].shape != source.shape:
            raise ProbeError(
                f"{what} parameter '{name}' has shape {tuple(own[name].shape)}, expected {tuple(source.shape)}",
                "param_shape", {"owner": what, "param": name, "received": [int(d) for d in own[name].shape]},
            )
    extra = [name for name in own if name not in weights]
    if extra:
        raise ProbeError(
            f"{what} has parameters the specification does not have: {', '.join(extra[:4])}",
            "param_extra", {"owner": what, "count": len(extra)},
        )
    with torch.no_grad():
        for name, source in weights.items():
            own[name].copy_(source)


class Replay(nn.Module):
    """A module whose forward ignores its inputs and returns fixed outputs.

    Stands in for a student's sub-module so that only the TODO under test runs.
    """

    def __init__(self, outputs: Any, **attributes: Any) -> None:
        super().__init__()
        self.outputs = outputs
        for name, value in attributes.items():
            setattr(self, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.outputs


# ----------------------------------------------------------------------------------------
# Library tripwires (iou and nms must be the student's own)
# ----------------------------------------------------------------------------------------

#: (module path, attribute) of the library box ops a student must not call.
_TRIPWIRE_TARGETS: tuple[tuple[str, str], ...] = (
    ("torchvision.ops", "box_iou"),
    ("torchvision.ops", "nms"),
    ("torchvision.ops", "batched_nms"),
    ("torchvision.ops", "box_area"),
    ("torchvision.ops.boxes", "box_iou"),
    ("torchvision.ops.boxes", "nms"),
    ("torchvision.ops.boxes", "batched_nms"),
    ("torchvision.ops.boxes", "box_area"),
    ("torchvision.ops.boxes", "_box_inter_union"),
    ("torchvision.ops.boxes", "_batched_nms_vanilla"),
    ("torchvision.ops.boxes", "_batched_nms_coordinate_trick"),
)


class _TorchvisionImportTripwire:
    """``sys.meta_path`` finder that fails any import of torchvision (see :func:`library_tripwires`)."""

    def __init__(self, hits: list[str]) -> None:
        self.hits = hits

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision" or name.startswith("torchvision."):
            self.hits.append(f"import {name}")
            raise ProbeError(f"{name} was imported: write this function yourself, without library box operations")
        return None


@contextlib.contextmanager
def library_tripwires(hits: list[str]) -> Iterator[None]:
    """Replace torchvision's box ops (and ``torch.ops.torchvision.nms``) by tripwires.

    A tripwire appends its name to ``hits`` and raises :class:`ProbeError`. Everything is
    restored on exit.
    """
    import importlib

    saved: list[tuple[Any, str, Any]] = []

    def tripwire(label: str) -> Any:
        def wire(*args: Any, **kwargs: Any) -> Any:
            hits.append(label)
            raise ProbeError(f"{label} was called: write this function yourself, without library box operations")

        return wire

    if "torchvision" not in sys.modules:
        # The sandbox child skips torchvision when no file of the group names it; block its
        # import instead of importing it (~1.4 s) only to patch it.
        blocker = _TorchvisionImportTripwire(hits)
        sys.meta_path.insert(0, blocker)
        try:
            yield
        finally:
            sys.meta_path.remove(blocker)
        return
    try:
        for module_name, attr in _TRIPWIRE_TARGETS:
            owner = importlib.import_module(module_name)
            if hasattr(owner, attr):
                saved.append((owner, attr, getattr(owner, attr)))
                setattr(owner, attr, tripwire(f"{module_name}.{attr}"))
        ops = torch.ops.torchvision
        saved.append((ops, "nms", ops.nms))
        setattr(ops, "nms", tripwire("torch.ops.torchvision.nms"))
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def library_names_in(module: ModuleType) -> list[str]:
    """Names in a student module's globals bound to torchvision box ops (e.g. ``from torchvision.ops import nms``)."""
    found = []
    for name, value in vars(module).items():
        origin = getattr(value, "__module__", "") or ""
        if callable(value) and origin.startswith("torchvision.ops"):
            found.append(name)
        elif isinstance(value, ModuleType) and value.__name__.startswith("torchvision.ops"):
            found.append(name)
    return found


# ----------------------------------------------------------------------------------------
# Generic probe: call one function of the package
# ----------------------------------------------------------------------------------------


def call_function(
    pkg: ModuleType,
    inputs: dict[str, Tensor],
    module: str,
    function: str,
    args: list[str] | None = None,
    kwargs: dict[str, Any] | None = None,
    dict_args: dict[str, str] | None = None,
    device: str = "auto",
    forbid_library_ops: bool = False,
) -> dict[str, Tensor]:
    """Call ``pkg.<module>.<function>`` on inputs moved to ``device``.

    Args:
        pkg: the hybrid package.
        inputs: CPU tensors by name.
        module: module name, e.g. ``"iou"``.
        function: function name, e.g. ``"iou"``.
        args: names of ``inputs`` passed positionally, in order.
        kwargs: JSON keyword arguments; ``dtype`` is a torch dtype name (``"float64"``) and
            ``device="auto"`` becomes the probe's device.
        dict_args: ``{parameter: prefix}``: pass ``{key: inputs["<prefix>.<key>"]}`` as that
            keyword argument (e.g. ``locations_per_fpn_level``).
        device: where the inputs go (``"auto"``: CUDA when present).
        forbid_library_ops: run under :func:`library_tripwires` and fail on library box ops.

    Returns:
        ``{"out" or "out.<key>": Tensor, "meta.device_ok", "meta.inputs_modified", "meta.library_calls"}``.
    """
    dev = resolve_device(device)
    moved = {name: t.to(dev) for name, t in inputs.items()}
    originals = {name: t.clone() for name, t in moved.items()}
    call_kwargs: dict[str, Any] = {}
    for key, value in (kwargs or {}).items():
        if key == "dtype":
            value = getattr(torch, value)
        elif key == "device" and value == "auto":
            value = dev
        call_kwargs[key] = value
    for key, prefix in (dict_args or {}).items():
        call_kwargs[key] = group(moved, prefix)
    target_module = getattr(pkg, module)
    fn = getattr(target_module, function)
    hits: list[str] = []
    if forbid_library_ops:
        bound = library_names_in(target_module)
        if bound:
            raise ProbeError(f"{module}.py binds library box operations ({', '.join(bound)}): write {function} yourself")
        with library_tripwires(hits):
            result = fn(*[moved[name] for name in args or []], **call_kwargs)
    else:
        result = fn(*[moved[name] for name in args or []], **call_kwargs)
    outputs: dict[str, Tensor] = {}
    flatten("out", result, outputs)
    modified = any(
        not torch.equal(moved[name], originals[name]) for name in moved if not torch.isnan(originals[name]).any()
    )
    finished = _finish(outputs, dev, modified)
    finished["meta.library_calls"] = torch.tensor(len(hits))
    return finished


# ----------------------------------------------------------------------------------------
# RPN probes
# ----------------------------------------------------------------------------------------


def _weights(inputs: Mapping[str, Tensor], dev: torch.device) -> dict[str, Tensor]:
    return {k: v.to(dev) for k, v in group(inputs, WEIGHT_PREFIX.rstrip(".")).items()}


def rpn_pred_net_forward(
    pkg: ModuleType, inputs: dict[str, Tensor], ctor_kwargs: dict[str, Any], device: str = "auto"
) -> dict[str, Tensor]:
    """Build the student's ``RPNPredictionNetwork(**ctor_kwargs)``, load reference weights, run forward.

    Inputs: ``w.<name>`` weights, ``feats.<level>`` Tensor[B, C, H, W].
    Returns: ``obj.<level>`` Tensor[B, H*W*A], ``box.<level>`` Tensor[B, H*W*A, 4] (+ meta).
    """
    dev = resolve_device(device)
    net = pkg.rpn.RPNPredictionNetwork(**ctor_kwargs).to(dev)
    load_weights(net, _weights(inputs, dev), "RPNPredictionNetwork")
    net.eval()
    with torch.no_grad():
        obj, box = net({k: v.to(dev) for k, v in group(inputs, "feats").items()})
    outputs: dict[str, Tensor] = {}
    flatten("obj", obj, outputs)
    flatten("box", box, outputs)
    return _finish(outputs, dev)


def rpn_pred_net_init(
    pkg: ModuleType, inputs: dict[str, Tensor], ctor_kwargs: dict[str, Any], seed: int
) -> dict[str, Tensor]:
    """Statistics of a freshly built student ``RPNPredictionNetwork`` (its own initialisation).

    Returns ``std.<name>`` (standard deviation of each conv weight) and ``max_abs.<name>``
    (largest absolute value of each conv bias), as 0-d float64 tensors.
    """
    torch.manual_seed(seed)
    net = pkg.rpn.RPNPredictionNetwork(**ctor_kwargs)
    outputs: dict[str, Tensor] = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            outputs[f"std.{name}"] = module.weight.detach().double().std()
            if module.bias is not None:
                outputs[f"max_abs.{name}"] = module.bias.detach().double().abs().max()
    return _finish(outputs, torch.device("cpu"))


@contextlib.contextmanager
def _patched(module: ModuleType, **replacements: Any) -> Iterator[None]:
    """Temporarily replace module globals (e.g. ``sample_rpn_training``)."""
    saved = {name: getattr(module, name) for name in replacements if hasattr(module, name)}
    try:
        for name, value in replacements.items():
            setattr(module, name, value)
        yield
    finally:
        for name in replacements:
            if name in saved:
                setattr(module, name, saved[name])
            else:
                delattr(module, name)


class _ReplayPredictionNetwork(Replay):
    """Built in place of the student's RPNPredictionNetwork inside ``RPN.__init__``."""

    def __init__(self, in_channels: int, stem_channels: Any, num_anchors: int = 3) -> None:
        super().__init__(None, num_anchors=num_anchors)


def _build_rpn(pkg: ModuleType, ctor_kwargs: dict[str, Any]) -> nn.Module:
    """The student's ``RPN(**ctor_kwargs)`` with a replay prediction network (never the student's)."""
    with _patched(pkg.rpn, RPNPredictionNetwork=_ReplayPredictionNetwork):
        rpn = pkg.rpn.RPN(**ctor_kwargs)
    return rpn


def rpn_predict_proposals(
    pkg: ModuleType,
    inputs: dict[str, Tensor],
    ctor_kwargs: dict[str, Any],
    image_size: list[int],
    device: str = "auto",
) -> dict[str, Tensor]:
    """Run the student's ``RPN.predict_proposals`` on fixed anchors and predictions.

    Inputs: ``anchors.<level>`` Tensor[H*W*A, 4], ``obj.<level>`` Tensor[B, H*W*A],
    ``box.<level>`` Tensor[B, H*W*A, 4]. Returns ``proposals.<level>.<image>`` Tensor[K, 4].
    """
    dev = resolve_device(device)
    rpn = _build_rpn(pkg, ctor_kwargs).to(dev).eval()
    moved = {k: v.to(dev) for k, v in inputs.items()}
    result = rpn.predict_proposals(
        group(moved, "anchors"), group(moved, "obj"), group(moved, "box"), (int(image_size[0]), int(image_size[1]))
    )
    outputs: dict[str, Tensor] = {}
    flatten("proposals", result, outputs)
    return _finish(outputs, dev)


def rpn_losses(
    pkg: ModuleType,
    inputs: dict[str, Tensor],
    ctor_kwargs: dict[str, Any],
    strides: dict[str, int],
    device: str = "auto",
) -> dict[str, Tensor]:
    """Training-mode forward of the student's RPN with replayed predictions and the fixed sampler.

    Inputs: ``feats.<level>`` Tensor[B, C, H, W] (only their shapes matter), ``obj.<level>``,
    ``box.<level>`` (the replayed predictions), ``gt_boxes`` Tensor[B, G, 5].
    Returns ``loss_rpn_obj``, ``loss_rpn_box`` (0-d) and ``grad_obj.<level>``,
    ``grad_box.<level>`` (gradients of the summed losses w.r.t. the predictions).
    """
    dev = resolve_device(device)
    rpn = _build_rpn(pkg, ctor_kwargs).to(dev).train()
    moved = {k: v.to(dev) for k, v in inputs.items()}
    obj = {k: v.clone().requires_grad_(True) for k, v in group(moved, "obj").items()}
    box = {k: v.clone().requires_grad_(True) for k, v in group(moved, "box").items()}
    rpn.pred_net = Replay((obj, box), num_anchors=len(ctor_kwargs.get("anchor_aspect_ratios", (0.5, 1.0, 2.0))))
    # Proposals are graded on their own: a stub keeps a bug there from costing loss points.
    rpn.predict_proposals = lambda *args, **kwargs: {level: [] for level in obj}
    with _patched(pkg.rpn, sample_rpn_training=deterministic_sampler):
        result = rpn(group(moved, "feats"), dict(strides), moved["gt_boxes"])
    outputs: dict[str, Tensor] = {}
    for key in ("loss_rpn_obj", "loss_rpn_box"):
        if key not in result:
            raise ProbeError(f"RPN.forward in training mode returned no '{key}'")
        outputs[key] = result[key]
    _require_tensors(outputs)
    total = outputs["loss_rpn_obj"] + outputs["loss_rpn_box"]
    if total.requires_grad:
        grads = torch.autograd.grad(total, [*obj.values(), *box.values()], allow_unused=True)
        for (level, tensor), grad in zip([*obj.items(), *box.items()], grads):
            kind = "grad_obj" if any(tensor is t for t in obj.values()) else "grad_box"
            outputs[f"{kind}.{level}"] = torch.zeros_like(tensor) if grad is None else grad
    return _finish(outputs, dev)
