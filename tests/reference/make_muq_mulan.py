"""Build the MuQ-MuLan reference that `tests/test_muq.py` compares `tada.evaluation.scorers.muq` against.

This runs the `muq` package itself, so it needs an environment where muq 0.1.0 works, separate from
the one tada is installed in (muq needs transformers < 5 and torchaudio):

    python -m venv muq-env
    muq-env/bin/pip install torch "transformers==4.57.6" einops easydict safetensors huggingface_hub \
        soundfile ftfy regex tokenizers
    muq-env/bin/pip install --no-deps muq==0.1.0 x-clip==0.14.4 torchaudio   # a torchaudio matching torch
    muq-env/bin/python tests/reference/make_muq_mulan.py

(x-clip imports torchvision at import time but muq's inference path never uses it; where no torchvision
matches the installed torch, an empty `torchvision` package with an empty `transforms` module suffices.
torchaudio is used for its pure-PyTorch MelSpectrogram; a build whose compiled extension does not
load next to the installed torch works once that extension's files are removed.)

It writes `tests/reference/muq-mulan-tiny/`: a MuQ-MuLan checkpoint laid out as on the hub (config.json,
model.safetensors, with every weight and buffer perturbed away from its initial value so that a weight
loaded into the wrong place shows), configs and a tokenizer for its two backbones, and
`reference.safetensors` + `reference.json` with inputs and the package's outputs.

`--full-size DIR` writes the same at the widths of MuQ-MuLan-large (MuQ-large's 12 x 1024 conformer,
XLM-R base, 8-layer 768-wide MuLan transformers, 10 s clips; random weights, about 2.2 GB) into DIR, for
`benchmarks/muq_full_size.py`; it is not kept in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "muq-mulan-tiny"
SAMPLE_RATE = 24000
TEXTS = ["a fast piano piece with drums", "slow sad violin", "techno"]

W2V2 = {  # every key of MuQ-large's `w2v2_config`, at toy width
    "activation_dropout": 0.1, "adapter_kernel_size": 3, "adapter_stride": 2, "add_adapter": False,
    "apply_spec_augment": True, "architectures": ["Wav2Vec2ConformerForCTC"], "attention_dropout": 0.1,
    "bos_token_id": 1, "classifier_proj_size": 256, "codevector_dim": 768, "conformer_conv_dropout": 0.1,
    "contrastive_logits_temperature": 0.1, "conv_bias": True, "conv_depthwise_kernel_size": 7,
    "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum", "ctc_zero_infinity": False, "diversity_loss_weight": 0.1,
    "do_stable_layer_norm": True, "eos_token_id": 2, "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0, "feat_extract_norm": "layer", "feat_proj_dropout": 0.1,
    "feat_quantizer_dropout": 0.0, "final_dropout": 0.1, "gradient_checkpointing": False, "hidden_act": "swish",
    "hidden_dropout": 0.1, "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02,
    "intermediate_size": 64, "layer_norm_eps": 1e-5, "layerdrop": 0.0, "mask_feature_length": 10,
    "mask_feature_min_masks": 0, "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_min_masks": 2,
    "mask_time_prob": 0.05, "max_source_positions": 5000, "model_type": "wav2vec2-conformer",
    "num_adapter_layers": 3, "num_attention_heads": 4, "num_codevector_groups": 2, "num_codevectors_per_group": 320,
    "num_conv_pos_embedding_groups": 4, "num_conv_pos_embeddings": 16, "num_feat_extract_layers": 7,
    "num_hidden_layers": 2, "num_negatives": 100, "output_hidden_size": 32, "pad_token_id": 0,
    "position_embeddings_type": "rotary", "proj_codevector_dim": 768, "rotary_embedding_base": 10000,
    "tdnn_dilation": [1, 2, 3, 1, 1], "tdnn_dim": [512, 512, 512, 512, 1500], "tdnn_kernel": [5, 3, 3, 1, 1],
    "torch_dtype": "float32", "use_weighted_layer_sum": False, "vocab_size": 32, "xvector_output_dim": 512,
}
MUQ = {
    "label_rate": 25, "num_codebooks": 1, "codebook_dim": 4, "codebook_size": 64, "features": ["melspec_2048"],
    "hop_length": 240, "n_mels": 128, "conv_dim": 8, "encoder_dim": 32, "encoder_depth": 2,
    "stat": {"melspec_2048_cnt": 1, "melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623},
    "w2v2_config": W2V2,
}
MULAN = {
    "mulan": {"sr": SAMPLE_RATE, "clip_secs": 1, "dim_latent": 16, "decoupled_contrastive_learning": True,
              "hierarchical_contrastive_loss": False, "hierarchical_contrastive_loss_layers": None,
              "sigmoid_contrastive_loss": False, "rank_contrast": True},
    "audio_model": {"name": "tiny-muq", "model_dim": 32, "use_layer_idx": 1},
    "text_model": {"name": "tiny-xlm-roberta", "model_dim": 32, "use_layer_idx": -1},
    "audio_transformer": {"dim": 24, "tf_depth": 2, "heads": 2, "dim_head": 8, "attn_dropout": 0.0,
                          "ff_dropout": 0.0, "ff_mult": 4},
    "text_transformer": {"dim": 20, "tf_depth": 2, "max_seq_len": 64, "dim_head": 8, "heads": 2,
                         "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 4},
}

FULL_MUQ = {**MUQ, "conv_dim": 512, "encoder_dim": 1024, "encoder_depth": 12, "codebook_dim": 16, "codebook_size": 4096,
            "w2v2_config": {**W2V2, "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                            "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128,
                            "conv_depthwise_kernel_size": 31, "num_hidden_layers": 24, "output_hidden_size": 1024}}
FULL_MULAN = {
    "mulan": {**MULAN["mulan"], "clip_secs": 10, "dim_latent": 512},
    "audio_model": {"name": "muq-large", "model_dim": 1024, "use_layer_idx": -1},
    "text_model": {"name": "xlm-roberta-base", "model_dim": 768, "use_layer_idx": -1},
    "audio_transformer": {**MULAN["audio_transformer"], "dim": 768, "tf_depth": 8, "heads": 8, "dim_head": 64},
    "text_transformer": {**MULAN["text_transformer"], "dim": 768, "tf_depth": 8, "heads": 8, "dim_head": 64,
                         "max_seq_len": 1024},
}
TINY_XLMR = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
             "max_position_embeddings": 70}
FULL_XLMR = {}  # XLMRobertaConfig's defaults are xlm-roberta-base's widths


def write_tokenizer(folder: Path) -> int:
    """A word-level tokenizer over the test texts' words, with XLM-R's special tokens and template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = sorted({w for t in TEXTS for w in t.split()})
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 64}, indent=1))
    return len(vocab)


def perturb(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Move every floating parameter and buffer off its initial value (variances stay positive)."""
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen) * 0.1
            if name.endswith("running_var"):
                t.mul_(noise.exp())
            else:
                t.add_(noise)


def write_reference(out: Path, muq_config: dict, mulan_config: dict, xlmr_config: dict) -> None:
    from muq import MuQ, MuQMuLan
    from safetensors.torch import save_file
    from transformers import XLMRobertaConfig, XLMRobertaModel

    audio_name, text_name = mulan_config["audio_model"]["name"], mulan_config["text_model"]["name"]
    if out.exists():
        shutil.rmtree(out)
    (out / audio_name).mkdir(parents=True)
    (out / text_name).mkdir()
    MuQ(muq_config).save_pretrained(out / audio_name)
    vocab = write_tokenizer(out / text_name)
    XLMRobertaModel(XLMRobertaConfig(vocab_size=vocab, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                     **xlmr_config)).save_pretrained(out / text_name)

    os.chdir(out)  # the backbone names in the config are folders here
    torch.manual_seed(0)
    mulan = MuQMuLan(mulan_config)
    perturb(mulan, torch.Generator().manual_seed(1))
    mulan.eval().save_pretrained(out)
    mulan = MuQMuLan.from_pretrained(str(out)).eval()  # through the package's own loading path

    gen = torch.Generator().manual_seed(2)
    clip = mulan_config["mulan"]["clip_secs"]
    t = torch.arange(int(2.5 * clip * SAMPLE_RATE)) / SAMPLE_RATE  # two clips and half of one
    long = torch.stack([0.3 * torch.sin(2 * torch.pi * 440 * t), 0.2 * torch.sin(2 * torch.pi * 97 * t)])
    long = long + 0.05 * torch.randn(long.shape, generator=gen)
    short = 0.1 * torch.randn(1, int(0.7 * clip * SAMPLE_RATE), generator=gen)
    with torch.no_grad():
        outputs = {
            "wavs_long": long, "latents_long": mulan(wavs=long),
            "wavs_short": short, "latents_short": mulan(wavs=short),
            "text_latents": torch.cat([mulan(texts=[text]) for text in TEXTS]),
            "text_latents_batched": mulan(texts=TEXTS),
        }
    save_file({k: v.contiguous() for k, v in outputs.items()}, out / "reference.safetensors")
    import muq
    import transformers

    (out / "reference.json").write_text(json.dumps({
        "texts": TEXTS, "muq": getattr(muq, "__version__", "0.1.0"), "transformers": transformers.__version__,
        "torch": torch.__version__, "python": sys.version.split()[0]}, indent=1))
    for backbone in (audio_name, text_name):  # the MuQ-MuLan checkpoint holds their weights
        for weights in (out / backbone).glob("*.safetensors"):
            weights.unlink()
    for card in out.rglob("README.md"):  # model cards the hub mixin writes
        card.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full-size", type=Path, help="write a reference at MuQ-MuLan-large's widths to this folder")
    args = ap.parse_args()
    if args.full_size:
        write_reference(args.full_size.resolve(), FULL_MUQ, FULL_MULAN, FULL_XLMR)
        print(f"wrote {args.full_size}")
        return
    write_reference(OUT, MUQ, MULAN, TINY_XLMR)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
