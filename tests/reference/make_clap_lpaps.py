"""Build the CLAP-LPAPS reference that `tests/test_clap_lpaps.py` compares `tada.evaluation.clap_lpaps` against.

The reference is laion_clap itself (1.1.7), driven the way ZETA's evaluation code (Manor & Michaeli 2024,
`evals/lpaps.py` and `evals/pretrained_networks.py`, also used by the steering benchmark of the paper's
authors) drives it: a `CLAP_Module` whose checkpoint is read by `clap_module.factory.load_state_dict` and
loaded strictly; each clip goes through `training.data.get_audio_features` (max length 480000 samples,
"rand_trunc", "repeatpad"), then the audio branch's own `spectrogram_extractor`, `logmel_extractor`,
`bn0`, `reshape_wav2img`, `patch_embed`, `pos_drop` and its four Swin `layers`; the four layer outputs
(tokens x channels) are compared as ZETA's LPAPS does. Clips here are already mono 48 kHz, so ZETA's
resampling step (julius, which returns 48 kHz input unchanged) is not needed and not installed.

laion_clap cannot run next to tada (it needs numpy < 2 and imports torchvision, whose PyPI wheels are CUDA
builds that fail to load next to a CPU torch), so this runs in its own environment:

    python -m venv clap-env
    clap-env/bin/pip install "numpy<2" torch "transformers==4.57.6" safetensors soundfile librosa \
        torchlibrosa ftfy braceexpand webdataset wget h5py tqdm regex progressbar scipy scikit-learn \
        pandas llvmlite pillow
    clap-env/bin/pip install --no-deps laion-clap==1.1.7
    PYTHONPATH=src clap-env/bin/python tests/reference/make_clap_lpaps.py

(the torch wheel must be a CPU build, or one whose CUDA libraries load on the machine). Three things are
replaced in that environment, none of them on the audio path being compared:

* torchvision: an empty stand-in module (with the names laion_clap imports: `ops.misc.FrozenBatchNorm2d`,
  `transforms.*`, `datasets`) is put in `sys.modules` before laion_clap is imported; laion_clap uses
  torchvision only for image towers and the fusion model's mel resizing, neither reached here.
  transformers is imported first, so it still sees no torchvision.
* Hub downloads: laion_clap's data module loads three tokenizers at import time and its text branch calls
  `RobertaModel.from_pretrained("roberta-base")`; with no hub access, the tokenizers are replaced by
  unused placeholders and the text branch by a one-layer random RoBERTa of the width (768) the text
  projection expects.
* Model size: laion_clap's `create_htsat_model` only builds the three published HTSAT sizes, so it is
  replaced by one that calls laion_clap's own `HTSAT_Swin_Transformer` at toy widths (embed_dim 4, depths
  2-2-2-2, heads 1-1-2-2; spec_size 256, patch 4, window 8 as published), everything else unchanged.

It writes `tests/reference/clap-lpaps-tiny/`:

* `laion_clap_audio.safetensors`: the audio branch and audio projection of the laion_clap checkpoint,
  every weight and buffer perturbed away from its initial value, in laion_clap's key names; the fixed
  front-end matrices (STFT and mel filters), the Swin attention masks and relative position indices are
  left out, as laion_clap's constructor rebuilds them (and the text branch, which LPAPS never uses);
* `hf/`: the same audio tower as a transformers `ClapModel` folder (key mapping in `to_transformers`), with
  a tiny random text tower and tada's offline test tokenizer, and a feature extractor with laion_clap's
  mel settings (50-14000 Hz, "rand_trunc", "repeatpad");
* `reference.safetensors` + `reference.json`: the clip pairs (16-bit PCM at 48 kHz), the per-stage and
  total distances laion_clap gives for each pair, and versions.

`--full-size DIR` writes the same at HTSAT-base's widths (embed_dim 128, depths 2-2-12-2, heads 4-8-16-32,
the architecture of the music checkpoint; random weights, about 540 MB) with pairs of 10, 4.1 and 7.3 s,
for `benchmarks/clap_lpaps_full_size.py`; it is not kept in the repository.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "clap-lpaps-tiny"
SAMPLE_RATE = 48000
MAX_LEN = 480000
WINDOW = 8
ARCH = "HTSAT-lpaps-test"
# Model widths and the seconds of each clip pair (both clips of a pair have the same length).
TINY = {"embed_dim": 4, "depths": [2, 2, 2, 2], "heads": [1, 1, 2, 2], "joint": 16, "classes": 3,
        "pair_seconds": (1.2, 0.6, 1.7)}
FULL = {"embed_dim": 128, "depths": [2, 2, 12, 2], "heads": [4, 8, 16, 32], "joint": 512, "classes": 527,
        "pair_seconds": (10.0, 4.1, 7.3)}  # HTSAT-base, as in music_audioset_epoch_15_esc_90.14


# ----------------------------------------------------------------- environment


def prepare_environment(size: dict) -> None:
    import transformers  # first, so that it records torchvision as absent

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is a stand-in in this environment")

    modules = {}
    for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
                 "torchvision.datasets"):
        mod = types.ModuleType(name)
        mod.__spec__ = ModuleSpec(name, None)
        mod.__path__ = []
        modules[name] = mod
    modules["torchvision.ops.misc"].FrozenBatchNorm2d = unavailable
    for name in ("Normalize", "Compose", "RandomResizedCrop", "InterpolationMode", "ToTensor", "Resize",
                 "CenterCrop"):
        setattr(modules["torchvision.transforms"], name, unavailable)
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision"].datasets = modules["torchvision.datasets"]
    modules["torchvision.ops"].misc = modules["torchvision.ops.misc"]
    sys.modules.update(modules)

    class Placeholder:
        def __call__(self, *args, **kwargs):
            raise RuntimeError("no tokenizer in this environment")

    for cls in (transformers.BertTokenizer, transformers.RobertaTokenizer, transformers.BartTokenizer):
        cls.from_pretrained = classmethod(lambda c, *a, **k: Placeholder())
    text = transformers.RobertaConfig(vocab_size=16, hidden_size=768, num_hidden_layers=1, num_attention_heads=1,
                                      intermediate_size=8, max_position_embeddings=80)
    transformers.RobertaModel.from_pretrained = classmethod(lambda c, *a, **k: c(text))

    import laion_clap  # noqa: F401  (puts its clap_module on sys.path)
    from clap_module import factory, htsat, model

    cfg = copy.deepcopy(factory._MODEL_CONFIGS["HTSAT-base"])
    cfg["embed_dim"] = size["embed_dim"] * 2 ** (len(size["depths"]) - 1)
    cfg["joint_embed_shape"] = size["joint"]
    cfg["audio_cfg"].update(class_num=size["classes"], model_name="tiny")
    factory._MODEL_CONFIGS[ARCH] = cfg

    def create_tiny_htsat(audio_cfg, enable_fusion=False, fusion_type="None"):
        return htsat.HTSAT_Swin_Transformer(
            spec_size=256, patch_size=4, patch_stride=(4, 4), num_classes=audio_cfg.class_num,
            embed_dim=size["embed_dim"], depths=size["depths"], num_heads=size["heads"], window_size=WINDOW,
            config=audio_cfg, enable_fusion=enable_fusion,
            fusion_type=fusion_type)

    model.create_htsat_model = create_tiny_htsat


# ----------------------------------------------------------------- checkpoint

FIXED = ("spectrogram_extractor.", "logmel_extractor.", "attn_mask", "relative_position_index")


def perturb(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Random weights of a sensible scale for every learned tensor; batch-norm statistics of log-mel scale."""
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point() or any(f in name for f in FIXED):
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("bn0.running_mean"):
                t.copy_(-40 + 5 * noise)
            elif name.endswith("bn0.running_var"):
                t.copy_(200 * (0.3 * noise).exp())
            elif name.endswith("running_var"):
                t.mul_((0.1 * noise).exp())
            elif t.ndim >= 2:
                t.copy_(noise / max(t[0].numel(), 1) ** 0.5)
            else:
                t.add_(0.1 * noise)


def build_laion(ckpt: Path):
    """Write a random tiny checkpoint, then load it the way ZETA's evaluation code does."""
    import laion_clap
    from clap_module.factory import load_state_dict

    torch.manual_seed(0)
    module = laion_clap.CLAP_Module(enable_fusion=False, amodel=ARCH, device="cpu")
    perturb(module.model, torch.Generator().manual_seed(1))
    state = module.model.state_dict()
    # Released checkpoints carry this key (saved by an older transformers); the loader deletes it.
    state["text_branch.embeddings.position_ids"] = torch.arange(80)[None]
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt)

    module = laion_clap.CLAP_Module(enable_fusion=False, amodel=ARCH, device="cpu")
    pkg = load_state_dict(str(ckpt))
    pkg.pop("text_branch.embeddings.position_ids", None)
    module.model.load_state_dict(pkg)
    module.eval()
    return module


def to_transformers(laion_state: dict) -> dict:
    """laion_clap audio branch + projection -> transformers ClapModel keys (audio side)."""
    out = {}
    for key, value in laion_state.items():
        if key.startswith("audio_projection."):
            index = key.split(".")[1]
            out[key.replace(f"audio_projection.{index}.", {"0": "audio_projection.linear1.",
                                                          "2": "audio_projection.linear2."}[index])] = value
            continue
        if not key.startswith("audio_branch.") or any(f in key for f in FIXED) or ".tscam_conv." in key \
                or ".head." in key:
            continue
        name = key[len("audio_branch."):]
        name = name.replace("bn0.", "batch_norm.")
        name = name.replace(".norm1.", ".layernorm_before.").replace(".norm2.", ".layernorm_after.")
        name = name.replace(".mlp.fc1.", ".intermediate.dense.").replace(".mlp.fc2.", ".output.dense.")
        name = name.replace(".attn.proj.", ".attention.output.dense.")
        name = name.replace(".attn.relative_position_bias_table", ".attention.self.relative_position_bias_table")
        prefix = "audio_model.audio_encoder."
        if ".attn.qkv." in name:
            q, k, v = value.chunk(3, dim=0)
            for part, tensor in zip(("query", "key", "value"), (q, k, v)):
                out[prefix + name.replace(".attn.qkv.", f".attention.self.{part}.")] = tensor.clone()
            continue
        out[prefix + name] = value
    return out


def tiny_tokenizer(folder: Path):
    """tada's offline test tokenizer (byte-level BPE over printable ASCII plus one token per test word),
    written as vocab.json + merges.txt, which this transformers' RobertaTokenizer needs."""
    from transformers import RobertaTokenizer

    from tada.evaluation.scorers.clap import _TINY_WORDS

    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [chr(i) for i in range(33, 127)] + ["\u0120"]
    merges = []
    for word in _TINY_WORDS:
        current = "\u0120"
        for ch in word:
            if (current, ch) not in merges:
                merges.append((current, ch))
            current += ch
            if current not in tokens:
                tokens.append(current)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate([*tokens, "<mask>"])}))
    merges_file.write_text("#version: 0.2\n" + "".join(f"{x} {y}\n" for x, y in merges))
    return RobertaTokenizer(str(vocab), str(merges_file), add_prefix_space=True, model_max_length=128)


def write_transformers(folder: Path, laion_state: dict, size: dict) -> None:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tokenizer = tiny_tokenizer(folder)
    config = ClapConfig(
        text_config={"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "hidden_size": 32,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                     "max_position_embeddings": 130},
        audio_config={"depths": size["depths"], "num_attention_heads": size["heads"],
                      "patch_embeds_hidden_size": size["embed_dim"],
                      "hidden_size": size["embed_dim"] * 2 ** (len(size["depths"]) - 1), "window_size": WINDOW,
                      "spec_size": 256,
                      "num_mel_bins": 64, "patch_size": 4, "patch_stride": [4, 4], "enable_fusion": False},
        projection_dim=size["joint"])
    torch.manual_seed(3)
    model = ClapModel(config).eval()
    converted = to_transformers(laion_state)
    own = model.state_dict()
    audio_keys = {k for k in own if k.startswith(("audio_model.", "audio_projection."))
                  and "relative_position_index" not in k}
    if set(converted) != audio_keys:
        raise RuntimeError(f"key mapping incomplete: missing {sorted(audio_keys - set(converted))}, "
                           f"unknown {sorted(set(converted) - audio_keys)}")
    for k, v in converted.items():
        if own[k].shape != v.shape:
            raise RuntimeError(f"{k}: shape {tuple(v.shape)} for {tuple(own[k].shape)}")
    model.load_state_dict(converted, strict=False)
    model.save_pretrained(folder)
    extractor = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc",
                                     padding="repeatpad")
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)


# ----------------------------------------------------------------- reference outputs


def clips(pair_seconds) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Pairs of 16-bit PCM clips: a tone mixture against the same with one partial moved, noise against a
    chirp, and a modulated tone against a copy with different low-level noise."""
    gen = torch.Generator().manual_seed(2)
    a, b = [], []
    for i, seconds in enumerate(pair_seconds):
        t = torch.arange(int(seconds * SAMPLE_RATE), dtype=torch.float64) / SAMPLE_RATE
        if i == 0:
            x = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.1 * torch.sin(2 * torch.pi * 1250 * t)
            y = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.1 * torch.sin(2 * torch.pi * 2100 * t)
        elif i == 1:
            x = 0.2 * torch.randn(t.shape, generator=gen, dtype=torch.float64)
            y = 0.4 * torch.sin(2 * torch.pi * (200 + 3000 * t) * t)
        else:
            x = 0.25 * torch.sin(2 * torch.pi * 330 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) / 2
            x = x + 0.02 * torch.randn(t.shape, generator=gen, dtype=torch.float64)
            y = x.clone()
        x = x + 0.01 * torch.randn(t.shape, generator=gen, dtype=torch.float64)
        y = y + 0.01 * torch.randn(t.shape, generator=gen, dtype=torch.float64)
        a.append((x.clamp(-1, 1) * 32767).round().to(torch.int16))
        b.append((y.clamp(-1, 1) * 32767).round().to(torch.int16))
    return a, b


@torch.no_grad()
def stage_outputs(module, wav: torch.Tensor) -> list[torch.Tensor]:
    """The four Swin layer outputs for one mono 48 kHz clip, along ZETA's non-fusion path."""
    from laion_clap.training.data import get_audio_features

    branch = module.model.audio_branch
    sample = get_audio_features({}, wav, MAX_LEN, data_truncating="rand_trunc", data_filling="repeatpad",
                                audio_cfg=module.model_cfg["audio_cfg"])
    x = sample["waveform"].unsqueeze(0)
    x = branch.logmel_extractor(branch.spectrogram_extractor(x))
    x = branch.bn0(x.transpose(1, 3)).transpose(1, 3)
    x = branch.reshape_wav2img(x)
    x = branch.patch_embed(x, longer_idx=None)
    if branch.ape:
        x = x + branch.absolute_pos_embed
    x = branch.pos_drop(x)
    outs = []
    for layer in branch.layers:
        x, _ = layer(x)
        outs.append(x)
    return outs


def lpaps_stages(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
    """ZETA's LPAPS reduction on (1, tokens, channels) maps: unit norm along dim 1 (eps 1e-10 added to the
    norm), squared difference summed along dim 1, then the mean of what is left; one value per stage."""
    values = []
    for fa, fb in zip(feats_a, feats_b):
        na = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        values.append((na - nb).pow(2).sum(dim=1, keepdim=True).mean(dim=[1, 2]).squeeze())
    return torch.stack(values)


def write_reference(out: Path, size: dict) -> None:
    prepare_environment(size)
    from safetensors.torch import save_file

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ckpt = out / "laion_clap.pt"
    module = build_laion(ckpt)
    ckpt.unlink()  # its learned audio tensors are kept below; the rest is rebuilt by the constructor
    state = {k: v.contiguous() for k, v in module.model.state_dict().items()
             if k.startswith(("audio_branch.", "audio_projection.")) and not any(f in k for f in FIXED)}
    save_file(state, out / "laion_clap_audio.safetensors")
    write_transformers(out / "hf", state, size)

    a, b = clips(size["pair_seconds"])
    tensors, stages, shapes = {}, [], None
    for i, (x, y) in enumerate(zip(a, b)):
        fa = stage_outputs(module, x.float() / 32768)
        fb = stage_outputs(module, y.float() / 32768)
        stages.append(lpaps_stages(fa, fb))
        shapes = [list(f.shape) for f in fa]
        tensors[f"a{i}"], tensors[f"b{i}"] = x, y
    stages = torch.stack(stages)
    tensors["stages"], tensors["lpaps"] = stages, stages.sum(dim=1)
    save_file(tensors, out / "reference.safetensors")
    from importlib.metadata import version

    import numpy
    import transformers

    (out / "reference.json").write_text(json.dumps({
        "pairs": len(a), "sample_rate": SAMPLE_RATE, "pcm_scale": 32768, "stage_shapes": shapes,
        "laion_clap": version("laion_clap"), "transformers": transformers.__version__, "torch": torch.__version__,
        "numpy": numpy.__version__, "python": sys.version.split()[0]}, indent=1))
    for card in out.rglob("README.md"):
        card.unlink()
    print(f"wrote {out}: lpaps {tensors['lpaps'].tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full-size", type=Path, help="write a reference at HTSAT-base's widths to this folder")
    args = ap.parse_args()
    write_reference(args.full_size.resolve() if args.full_size else OUT, FULL if args.full_size else TINY)


if __name__ == "__main__":
    main()
