"""tada: localize and steer musical concepts in text-to-music diffusion models.

    import tada
    model = tada.load("toy")                                   # or a real checkpoint, or tada.wrap(pipe)
    layers = tada.localize(model, concept="tempo")             # LayerImpact (eq. 9)
    vec = tada.caa.fit(model, "tempo", sites=layers.top(2))    # SteeringVector (eq. 2)
    audio = model.generate("a jazz piece", seeds=0, steer=[vec.at(40)])   # ReNorm (eq. 3)
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "load": "tada.models.registry",
    "wrap": "tada.models.registry",
    "localize": "tada.localization",
    "LayerImpact": "tada.localization",
    "Audio": "tada.audio",
    "SteeringVector": "tada.methods.vector",
}
#: submodules reachable as attributes: ``tada.caa.fit``, ``tada.sae.TopKSAE``, ``tada.hooks.Capture``
_MODULES = {"caa": "tada.methods.caa", "sae": "tada.sae", "hooks": "tada.engine.hooks"}


def __getattr__(name):
    if name in _MODULES:
        return import_module(_MODULES[name])
    if name not in _LAZY:
        raise AttributeError(f"module 'tada' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
