"""Model names -> adapters. `load(name)` builds or downloads a pipeline; `wrap(pipe)` adapts one you hold.

Real checkpoints are loaded with the family's own ``from_pretrained`` (by alias, hub id or local folder);
``tiny-*`` names build the same pipeline classes with tiny random weights offline (for tests and
shape checks); ``toy`` is the small model trained on a synthetic music world that ships in the package.
"""

from __future__ import annotations

from collections.abc import Callable

from tada.errors import TadaError
from tada.models.base import AudioModel

# diffusers pipeline class name -> "module:Class" of the AudioModel subclass that adapts it
FAMILIES = {
    "StableAudioPipeline": "tada.models.stable_audio:StableAudioModel",
    "AudioLDM2Pipeline": "tada.models.audioldm2:AudioLDM2Model",
    "AceStepPipeline": "tada.models.ace_step:AceStepModel",
    "ToyPipeline": "tada.models.toy:ToyModel",
}

# alias -> (diffusers pipeline class, default hub id)
CHECKPOINTS = {
    "stable-audio-open": ("StableAudioPipeline", "stabilityai/stable-audio-open-1.0"),
    "audioldm2-music": ("AudioLDM2Pipeline", "cvssp/audioldm2-music"),
    "ace-step-1.5": ("AceStepPipeline", "ACE-Step/acestep-v15-xl-base-diffusers"),
    "ace-step-1.5-turbo": ("AceStepPipeline", "ACE-Step/acestep-v15-xl-turbo-diffusers"),
}


def _import(path: str):
    import importlib

    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def _toy(**kw):
    from tada.toy.model import ToyPipeline

    return ToyPipeline.from_pretrained(kw.pop("path", None))


def _tiny(builder: str) -> Callable:
    def build(seed: int = 0, **kw):
        return _import(f"tada.models.tiny:{builder}")(seed=seed)

    return build


BUILDERS: dict[str, Callable] = {
    "toy": _toy,
    "tiny-stable-audio": _tiny("build_tiny_stable_audio"),
    "tiny-audioldm2": _tiny("build_tiny_audioldm2"),
    "tiny-ace-step": _tiny("build_tiny_ace_step"),
}


def known_models() -> list[str]:
    return sorted(BUILDERS) + sorted(CHECKPOINTS)


#: Where :func:`load` puts a pipeline that can move when no ``device`` is given (None: where it was built, the
#: CPU); the command line sets it from its ``--device`` option.
DEFAULT_DEVICE: str | None = None


def auto_device() -> str:
    """This process's GPU when there is one (``cuda:LOCAL_RANK`` under torchrun / accelerate), else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return "cpu"


def load(name: str = "toy", **kw) -> AudioModel:
    """Load a model by name: ``toy`` (default, offline), ``tiny-stable-audio``, ``tiny-audioldm2``,
    ``tiny-ace-step`` (random weights, offline), ``stable-audio-open``, ``audioldm2-music``,
    ``ace-step-1.5``, ``ace-step-1.5-turbo`` (downloaded by diffusers), or a hub id / local folder of one
    of those pipelines. Keyword arguments go to the builder or to ``from_pretrained`` (e.g.
    ``torch_dtype``); ``device`` moves the pipeline.
    """
    if not isinstance(name, str) or not name:
        raise TadaError(f"model name must be a non-empty string; known models: {', '.join(known_models())}")
    device = kw.pop("device", None)
    if name in BUILDERS:
        pipe = BUILDERS[name](**kw)
    elif name in CHECKPOINTS or "/" in name:
        import diffusers

        cls_name, repo = CHECKPOINTS.get(name, (None, name))
        if cls_name is None:
            try:
                cls_name = diffusers.DiffusionPipeline.load_config(repo).get("_class_name")
            except (OSError, ValueError) as err:
                raise OSError(f"could not read the pipeline config of {repo!r}: {err}") from err
        cls = getattr(diffusers, cls_name, None) or diffusers.DiffusionPipeline
        if cls_name == "AudioLDM2Pipeline" and "language_model" not in kw:
            # the checkpoints declare GPT2Model, which lost the generation helper the pipeline calls in
            # transformers 5; the LM-head class has it and loads the same weights
            from transformers import GPT2LMHeadModel

            kw["language_model"] = GPT2LMHeadModel.from_pretrained(repo, subfolder="language_model",
                                                                   torch_dtype=kw.get("torch_dtype"))
        try:
            pipe = cls.from_pretrained(repo, **kw)
        except (OSError, ValueError) as err:
            raise OSError(
                f"could not load {name!r} ({repo}) with {cls.__name__}.from_pretrained: {err}. Real checkpoints need "
                "a download (or a local folder); offline, use 'toy' or a 'tiny-*' model."
            ) from err
    else:
        raise TadaError(f"unknown model {name!r}; known models: {', '.join(known_models())}, "
                         "or a hub id / local folder such as 'stabilityai/stable-audio-open-1.0'")
    if device is None and DEFAULT_DEVICE is not None and hasattr(pipe, "to"):
        device = DEFAULT_DEVICE  # the embedded toy pipeline has no .to: it stays on the CPU
    if device is not None:
        if not hasattr(pipe, "to"):
            raise TadaError(f"{name} runs on the CPU only; got device={device!r}")
        pipe = pipe.to(device)
    model = wrap(pipe, name=name)
    if name.startswith("tiny-"):
        model.default_duration = 1.0  # random weights: short clips keep tests and shape checks fast
        model.default_steps = 4
    return model


def wrap(pipe, name: str | None = None, **generic) -> AudioModel:
    """Adapt a pipeline object you already hold.

    StableAudioPipeline, AudioLDM2Pipeline, AceStepPipeline and tada's ToyPipeline (and their
    subclasses) get their dedicated adapters. Any other diffusers-style pipeline is wrapped by
    :class:`~tada.models.generic.GenericModel`, which finds the cross-attention sites with a probe
    generation; ``generic`` keyword arguments (guidance_order, frames, duration_kwarg, sample_rate,
    default_steps, default_guidance, default_duration) tell it what the probe cannot see. A family
    needing more subclasses :class:`~tada.models.base.AudioModel` (see its docstring).
    """
    for cls in type(pipe).__mro__:
        adapter = FAMILIES.get(cls.__name__)
        if adapter is not None:
            return _import(adapter)(pipe, name=name)
    from tada.models.generic import GenericModel

    return GenericModel(pipe, name=name, **generic)
