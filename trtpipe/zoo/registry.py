"""The model zoo: named models registered by decorator, plus families resolved by prefix (``timm:<name>``).

Registering a model costs no torch import: an entry holds a PreprocessSpec template and a create
function that imports its framework only when called. So ``trtpipe zoo list`` is instant and an
export that is already up to date never loads torch.

    @register_model("mobilenetv2", source="torchvision", preprocess=PreprocessSpec(...))
    def create(weights: str) -> torch.nn.Module: ...
"""

from __future__ import annotations

import concurrent.futures
import difflib
import functools
import importlib
import logging
import pkgutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from trtpipe.errors import InputError, ModelNotFoundError, WeightsError
from trtpipe.spec import PreprocessSpec

if TYPE_CHECKING:  # torch is imported only by the functions that need it
    import torch

log = logging.getLogger("trtpipe.zoo")

# Every module in trtpipe/zoo/sources registers models or families when imported (on first use of
# the registry); adding a source is adding a module there.
SOURCES_PACKAGE = "trtpipe.zoo.sources"

WEIGHTS_KEYWORDS = ("auto", "pretrained", "random")


# How long `trtpipe zoo list` waits for a weights host to answer (all hosts are probed at once).
PROBE_TIMEOUT_S = 0.5
# Where ``--weights auto`` lands when pretrained weights are neither cached nor downloadable.
RANDOM_HERE = "random here (no network)"


def _unknown_status() -> str:
    return "pretrained (download)"


@functools.lru_cache(maxsize=None)
def _probe(host: str) -> tuple[concurrent.futures.Future, float]:
    """Starts (once per process) a TCP connection to ``host``:443 in a daemon thread.

    Returns:
        A future that says whether it opened, and the ``time.monotonic()`` deadline for its answer.

    A daemon thread rather than ``socket.create_connection(timeout=...)`` alone: that timeout does not
    cover the DNS lookup, which can take many seconds on a machine with a resolver but no route.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
            future.set_result(True)
        except OSError:
            future.set_result(False)

    threading.Thread(target=connect, name=f"trtpipe-probe-{host}", daemon=True).start()
    return future, time.monotonic() + PROBE_TIMEOUT_S


def host_reachable(host: str) -> bool:
    """True when ``host``:443 accepted a TCP connection within PROBE_TIMEOUT_S of its probe's start (once per process)."""
    future, deadline = _probe(host)
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        return False


def probe_hosts(hosts) -> None:
    """Starts the probes of several hosts at once, so that listing the zoo waits PROBE_TIMEOUT_S at most in all."""
    for host in hosts:
        _probe(host)


def download_status(host: str, cached: bool) -> str:
    """What ``--weights auto`` will give here for weights that download from ``host``.

    Returns:
        "pretrained (cached)", "pretrained (download)" when ``host`` answers now, else RANDOM_HERE.
    """
    if cached:
        return "pretrained (cached)"
    return "pretrained (download)" if host_reachable(host) else RANDOM_HERE


@dataclass(frozen=True)
class ModelEntry:
    """One model of the zoo: what it is, how its input is prepared, and how to build it."""

    name: str  # zoo name, e.g. "mobilenetv2" or "timm:resnet18"
    source: str  # torchvision | efficientnet_lite | timm: the library that builds it
    task: str  # classification | detection | segmentation
    description: str  # one line for `trtpipe zoo list`
    preprocess: PreprocessSpec  # template: model, source, size, resize, mean/std, labels; weights unset
    pretrained_tag: str  # names the pretrained weights in spec.weights, e.g. "MobileNet_V2_Weights.IMAGENET1K_V2"
    # create("pretrained") or create("random") -> torch.nn.Module in eval mode. Raises WeightsError
    # when pretrained weights cannot be loaded (no network, missing package); load_model decides
    # whether that falls back to random weights.
    create: Callable[[str], "torch.nn.Module"] = field(repr=False, compare=False)
    # Says what --weights auto gives on this machine: "pretrained (in wheel)", "pretrained (cached)",
    # "pretrained (download)" (the host answers now), "random here (no network)"; cheap, no torch.
    weights_status: Callable[[], str] = field(default=_unknown_status, repr=False, compare=False)

    @property
    def output_stem(self) -> str:
        return output_stem(self.name)


def output_stem(name: str) -> str:
    """File-name stem of a model's exported ONNX: ``timm:resnet18`` -> ``timm_resnet18``."""
    return name.replace(":", "_").replace("/", "_")


@dataclass(frozen=True)
class ModelFamily:
    """A prefix that resolves any model name of a library on demand (``timm:<name>``)."""

    prefix: str  # "timm"
    description: str  # for `trtpipe zoo list`
    resolve: Callable[[str], ModelEntry] = field(repr=False, compare=False)  # name after the prefix -> entry
    # What --weights auto gives for models not in the local cache (ModelEntry.weights_status)
    weights_status: Callable[[], str] = field(default=_unknown_status, repr=False, compare=False)


@dataclass(frozen=True)
class WeightsRequest:
    """What the user asked for: auto | pretrained | random | a checkpoint path."""

    kind: str  # auto | pretrained | random | checkpoint
    path: Path | None = None  # the checkpoint, for kind "checkpoint"

    @classmethod
    def parse(cls, text: str) -> "WeightsRequest":
        """Parses ``--weights``: a keyword, or else a checkpoint path that must exist."""
        if text in WEIGHTS_KEYWORDS:
            return cls(text)
        path = Path(text).expanduser()
        if not path.is_file():
            seen = "a directory" if path.is_dir() else "no such file"
            raise InputError(
                f"--weights {text!r} is not one of {', '.join(WEIGHTS_KEYWORDS)} and not a checkpoint file ({seen})",
                "give auto, pretrained, random, or the path of a state_dict saved with torch.save",
            )
        return cls("checkpoint", path.resolve())

    def __str__(self) -> str:
        return f"checkpoint:{self.path}" if self.kind == "checkpoint" else self.kind


_MODELS: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, ModelFamily] = {}
_sources_loaded = False


def register_model(
    name: str,
    *,
    source: str,
    preprocess: PreprocessSpec,
    description: str,
    pretrained_tag: str,
    task: str = "classification",
    weights_status: Callable[[], str] = _unknown_status,
) -> Callable[[Callable[[str], "torch.nn.Module"]], Callable[[str], "torch.nn.Module"]]:
    """Registers the decorated create function as zoo model ``name``.

    Args:
        name: the zoo name users type.
        source: the library that builds the model (recorded in the spec).
        preprocess: the input preparation the weights were trained with; ``model`` and ``source`` are
            filled in here, ``weights`` is set by load_model.
        description: one line for ``trtpipe zoo list``.
        pretrained_tag: names the pretrained weights, recorded as ``pretrained:<tag>``.
        task: classification | detection | segmentation. Defaults to classification.
        weights_status: what ``--weights auto`` gives here, cheaply (see download_status). Defaults to
            "pretrained (download)" for a source that cannot tell.
    """

    def decorator(create: Callable[[str], "torch.nn.Module"]) -> Callable[[str], "torch.nn.Module"]:
        if name in _MODELS:
            raise ValueError(f"zoo model {name!r} is registered twice")  # a bug, not user input
        _MODELS[name] = ModelEntry(
            name=name,
            source=source,
            task=task,
            description=description,
            preprocess=preprocess.replace(model=name, source=source, task=task),
            pretrained_tag=pretrained_tag,
            create=create,
            weights_status=weights_status,
        )
        return create

    return decorator


def register_family(prefix: str, *, description: str, weights_status: Callable[[], str] = _unknown_status):
    """Registers the decorated resolver for model names ``<prefix>:<name>``."""

    def decorator(resolve: Callable[[str], ModelEntry]) -> Callable[[str], ModelEntry]:
        _FAMILIES[prefix] = ModelFamily(prefix, description, resolve, weights_status)
        return resolve

    return decorator


def _load_sources() -> None:
    global _sources_loaded
    if not _sources_loaded:
        _sources_loaded = True
        package = importlib.import_module(SOURCES_PACKAGE)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
            importlib.import_module(f"{SOURCES_PACKAGE}.{info.name}")


def get_model(name: str) -> ModelEntry:
    """Returns the zoo entry for ``name`` (``mobilenetv2``, ``timm:resnet18``, ...).

    Raises:
        ModelNotFoundError: naming the known models and the closest match.
    """
    _load_sources()
    if name in _MODELS:
        return _MODELS[name]
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _FAMILIES:
        if not rest:
            raise ModelNotFoundError(
                f"model name {name!r} names no {prefix} model", f"write {prefix}:<name>, e.g. timm:resnet18"
            )
        return _FAMILIES[prefix].resolve(rest)
    close = difflib.get_close_matches(name.lower(), list(_MODELS), n=1, cutoff=0.5)
    families = ", ".join(f"{p}:<name>" for p in sorted(_FAMILIES))
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFoundError(
        f"unknown model {name!r}; the zoo has {len(_MODELS)} named models and {families}",
        f"{suggestion}`trtpipe zoo list` shows every model; any timm model works as timm:<name>",
    )


def list_models() -> list[ModelEntry]:
    """The named models of the zoo, sorted by name (families such as ``timm:`` are in list_families)."""
    _load_sources()
    return [_MODELS[name] for name in sorted(_MODELS)]


def list_families() -> list[ModelFamily]:
    """The prefixes that resolve models on demand, such as ``timm:``."""
    _load_sources()
    return [_FAMILIES[prefix] for prefix in sorted(_FAMILIES)]


@dataclass(frozen=True)
class LoadedModel:
    """A torch model ready to export, with its spec recording which weights it really has."""

    module: "torch.nn.Module"
    spec: PreprocessSpec


def load_model(entry: ModelEntry, weights: str | WeightsRequest = "auto") -> LoadedModel:
    """Builds ``entry``'s torch model with the weights asked for and records the outcome in its spec.

    Args:
        entry: the zoo entry.
        weights: auto (pretrained, or random with a WARNING naming the cause), pretrained (fail
            instead of falling back), random, or a checkpoint path. Defaults to auto.

    Returns:
        The model in eval mode; spec.weights is "pretrained:<tag>", "random" or "checkpoint:<path>".
    """
    request = weights if isinstance(weights, WeightsRequest) else WeightsRequest.parse(weights)
    import torch

    # Random weights are seeded so that two exports of the same request give the same ONNX.
    torch.manual_seed(0)
    if request.kind == "checkpoint":
        module = entry.create("random")
        _load_checkpoint(module, request.path, entry.name)
        outcome = f"checkpoint:{request.path}"
    elif request.kind == "random":
        module, outcome = entry.create("random"), "random"
    else:
        try:
            module = entry.create("pretrained")
            outcome = f"pretrained:{entry.pretrained_tag}"
        except WeightsError as exc:
            if request.kind == "pretrained":
                raise
            # auto: an export without network still works, and the spec says the weights are random.
            log.warning("WARNING: %s: using RANDOM weights: %s", entry.name, exc.message)
            torch.manual_seed(0)
            module, outcome = entry.create("random"), "random"
    module.eval()
    return LoadedModel(module, entry.preprocess.replace(weights=outcome))


def _load_checkpoint(module: "torch.nn.Module", path: Path, model_name: str) -> None:
    """Loads a state_dict (optionally wrapped as {"state_dict": ...} or {"model": ...}) strictly."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, EOF, ...)
        raise WeightsError(
            f"checkpoint {path} cannot be read by torch.load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            "give a state_dict saved with torch.save(model.state_dict(), PATH), or use --weights auto/random",
        ) from None
    for key in ("state_dict", "model"):  # common training-script wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"checkpoint {path} holds a {type(state).__name__}, expected a state_dict of tensors",
            "save it with torch.save(model.state_dict(), PATH)",
        )
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1:3] or [str(exc)[:300]]
        raise WeightsError(
            f"checkpoint {path} does not fit {model_name}: {'; '.join(s.strip() for s in first)}",
            f"give a state_dict of the same architecture as {model_name} (same layers and shapes)",
        ) from None
