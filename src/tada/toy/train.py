"""Reproduce the toy world's shipped weights from seeds: data -> scorer -> model.

    python -m tada.toy.train all --out runs/toy --ship src/tada/toy/weights
    python -m tada.toy.train all --world v2 --out runs/toy-v2      # world v2 (tada.toy.world)

Each stage writes its results as it goes and resumes from them when started again (data: one
file per chunk of clips; scorer and model: a checkpoint every few hundred steps).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tada.errors import MissingFileError, TadaError, run_command
from tada.toy.model import TEXT_DIM, LinearLatent, MelSpec, ToyPipeline, shift_time
from tada.toy.scorer import (
    ATOMS,
    GROUPS,
    SCORER_CONFIG,
    AttributeNet,
    ToyScorer,
    atom_probabilities,
    attribute_targets,
    text_atoms,
)
from tada.toy.synth import INSTRUMENTS, caption, make_example, sample_attributes
from tada.toy.worlds import get_world

app = typer.Typer(add_completion=False, help=__doc__)
CHUNK = 500
#: Griffin-Lim round trips (the scorer's view of generated audio) are rendered for every
#: GL_EVERY-th training chunk and every test chunk: they cost more than the synthesis.
GL_EVERY = 4
TEST_SEED_OFFSET = 1_000_000
#: extra clips only the scorer trains on (it needs more examples than the model to tell piano from guitar)
EXTRA_SEED_OFFSET = 500_000


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"))


def _render_chunk(seeds: list[int], mel: MelSpec, with_gl: bool, make_example=make_example) -> dict:
    waves, targets, captions, attrs_list = [], [], [], []
    for seed in seeds:
        attrs, text, wave = make_example(seed)
        waves.append(torch.from_numpy(wave))
        targets.append(attribute_targets(attrs))
        second = caption(attrs, np.random.default_rng([seed, 1]))
        captions.append([text, second])
        attrs_list.append(attrs.to_dict())
    wave = torch.stack(waves)
    log_mel = mel.log_mel(wave)
    out = {"log_mel": log_mel.half(), "targets": torch.stack(targets), "captions": captions, "attrs": attrs_list}
    if with_gl:
        out["log_mel_gl"] = mel.log_mel(mel.griffin_lim(log_mel)).half()
        out["decoder"] = decoder_of(mel)
    return out


def decoder_of(mel: MelSpec) -> dict:
    """What decides a chunk's round-trip views: the analysis and synthesis settings (not the statistics)."""
    return {k: v for k, v in mel.to_config().items() if k not in ("mean", "std")}


def _current(path: Path, mel: MelSpec) -> bool:
    """A chunk file is current unless it holds round-trip views decoded with other settings (or unrecorded ones)."""
    chunk = torch.load(path, weights_only=False)
    return "log_mel_gl" not in chunk or chunk.get("decoder") == decoder_of(mel)


def world_of(out: Path) -> str:
    """The toy world a working folder was built for (its data/world.json; v1 when absent)."""
    marker = out / "data" / "world.json"
    return json.loads(marker.read_text())["world"] if marker.exists() else "v1"


def _write_chunk(path: Path, seeds: list[int], mel: MelSpec, with_gl: bool, world: str) -> int:
    torch.save(_render_chunk(seeds, mel, with_gl, get_world(world).make_example), str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)
    return len(seeds)


def build_data(out: Path, n_train: int, n_test: int, n_extra: int = 0, world: str = "v1", workers: int = 1) -> None:
    """Render clips into out/data/{train,extra,test}_NNNNNNN.pt chunks (skipping chunks already there).

    A chunk's clips come from its seeds alone, so `workers` processes rendering chunks side by side write the
    same files as one. A chunk whose round-trip views were decoded with other settings is rendered again."""
    if workers < 1:
        raise TadaError(f"workers must be >= 1; got {workers}")
    mel = get_world(world).mel_spec()  # an unknown world is refused before the folder is made
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "world.json"
    if any(folder.glob("*.pt")) and world_of(out) != world:
        raise TadaError(f"{folder} holds clips of world {world_of(out)!r}, not {world!r}; use another --out")
    marker.write_text(json.dumps({"world": world}))
    jobs = [("train", s, min(s + CHUNK, n_train), (s // CHUNK) % GL_EVERY == 0) for s in range(0, n_train, CHUNK)]
    jobs += [("test", TEST_SEED_OFFSET + s, TEST_SEED_OFFSET + min(s + CHUNK, n_test), True)
             for s in range(0, n_test, CHUNK)]
    jobs += [("extra", EXTRA_SEED_OFFSET + s, EXTRA_SEED_OFFSET + min(s + CHUNK, n_extra), (s // CHUNK) % GL_EVERY == 0)
             for s in range(0, n_extra, CHUNK)]
    todo = [(folder / f"{split}_{start:07d}.pt", list(range(start, stop)), with_gl) for split, start, stop, with_gl in jobs]
    todo = [job for job in todo if not job[0].exists() or not _current(job[0], mel)]  # stale views: rendered again
    with _progress() as progress:
        task = progress.add_task("rendering clips", total=n_train + n_test + n_extra, info="")
        progress.advance(task, n_train + n_test + n_extra - sum(len(seeds) for _, seeds, _ in todo))
        if workers == 1:
            for path, seeds, with_gl in todo:
                progress.advance(task, _write_chunk(path, seeds, mel, with_gl, world))
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                for done in as_completed([pool.submit(_write_chunk, path, seeds, mel, with_gl, world)
                                          for path, seeds, with_gl in todo]):
                    progress.advance(task, done.result())
    stats, log_mel = folder / "stats.json", load_split(out, "train", round_trip=False)["log_mel"]
    if not stats.exists() or json.loads(stats.read_text()).get("clips") != len(log_mel):  # a rerun with more clips
        log_mel = log_mel.float()
        stats.write_text(json.dumps({"clips": len(log_mel), "mean": log_mel.mean((0, 2)).tolist(),
                                     "std": log_mel.std((0, 2)).tolist()}))


def load_split(out: Path, *splits: str, round_trip: bool = True) -> dict:
    """The chunks of `splits` merged; with `round_trip`, also their round-trip views ("log_mel_gl", "targets_gl"),
    refused when a chunk's were decoded with other settings than its world's."""
    files = [f for split in splits for f in sorted((out / "data").glob(f"{split}_*.pt"))]
    if not files:
        raise MissingFileError(f"no {'/'.join(splits)} chunks under {out / 'data'}; run the 'data' stage first")
    parts = [torch.load(f, weights_only=False) for f in files]
    merged = {k: torch.cat([p[k] for p in parts]) for k in ("log_mel", "targets")}
    if round_trip:
        decoder = decoder_of(get_world(world_of(out)).mel_spec())
        stale = [f.name for f, p in zip(files, parts) if "log_mel_gl" in p and p.get("decoder") != decoder]
        if stale:
            raise TadaError(f"{len(stale)} chunks under {out / 'data'} ({stale[0]}, ...) hold round-trip views "
                            f"decoded with other settings than {decoder}; run the 'data' stage again to render them")
        with_gl = [p for p in parts if "log_mel_gl" in p]
        merged["log_mel_gl"] = torch.cat([p["log_mel_gl"] for p in with_gl])
        merged["targets_gl"] = torch.cat([p["targets"] for p in with_gl])
    merged["captions"] = [c for p in parts for c in p["captions"]]
    merged["attrs"] = [a for p in parts for a in p["attrs"]]
    return merged


def data_mel(out: Path) -> MelSpec:
    stats = json.loads((out / "data" / "stats.json").read_text())
    return get_world(world_of(out)).mel_spec(mean=stats["mean"], std=stats["std"])


# ----------------------------------------------------------------------------- scorer

def scorer_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy within each exclusive group + binary cross-entropy per instrument."""
    loss, start = 0.0, 0
    for values in GROUPS.values():
        sl = slice(start, start + len(values))
        loss = loss + torch.nn.functional.cross_entropy(logits[:, sl], targets[:, sl].argmax(-1))
        start += len(values)
    return loss + torch.nn.functional.binary_cross_entropy_with_logits(logits[:, start:], targets[:, start:]) * len(INSTRUMENTS)


def atom_accuracy(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Per group: share of clips whose argmax matches; per instrument: share with (p > 1/2) == present."""
    acc, start = {}, 0
    for group, values in GROUPS.items():
        sl = slice(start, start + len(values))
        acc[group] = (probs[:, sl].argmax(-1) == targets[:, sl].argmax(-1)).float().mean().item()
        start += len(values)
    for k, name in enumerate(INSTRUMENTS):
        acc[name] = ((probs[:, start + k] > 0.5) == (targets[:, start + k] > 0.5)).float().mean().item()
    return acc


def train_scorer(out: Path, steps: int, seed: int, batch: int = 64) -> ToyScorer:
    folder = out / "scorer"
    folder.mkdir(parents=True, exist_ok=True)
    mel = data_mel(out)
    data = load_split(out, "train", "extra")
    views = torch.cat([data["log_mel"], data["log_mel_gl"]]).float()
    x_all = mel.normalize(views)
    y_all = torch.cat([data["targets"], data["targets_gl"]])
    torch.manual_seed(seed)
    pitch = get_world(world_of(out)).pitch_classes
    net = AttributeNet(n_mels=mel.n_mels, mel_range=(mel.f_min, mel.f_max) if pitch else None)
    if net.mode is not None:
        net.mode.mean.copy_(torch.tensor(mel.mean)[:, None]), net.mode.std.copy_(torch.tensor(mel.std)[:, None])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
    ckpt, start = folder / "checkpoint.pt", 0
    settings = {"seed": seed, "batch": batch, "steps": steps, "clips": len(data["log_mel"]),
                "views": len(data["log_mel_gl"]), "decoder": decoder_of(mel)}
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state.get("config") != net.config:
            raise TadaError(f"{ckpt} is a scorer of another architecture ({state.get('config')}; this run builds "
                            f"{net.config}): move it away or use another --out")
        if state.get("settings") != settings:
            raise TadaError(f"{ckpt} was trained with other settings or data ({state.get('settings')}; this run: "
                            f"{settings}): move it away or use another --out")
        net.load_state_dict(state["net"]), opt.load_state_dict(state["opt"])
        start = state["step"]
    net.train()
    with _progress() as progress:
        task = progress.add_task("training scorer", total=steps, completed=start, info="")
        for step in range(start, steps):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            idx = torch.randint(len(x_all), (batch,), generator=g)
            x = x_all[idx]
            shift = int(torch.randint(0, x.shape[-1], (1,), generator=g))
            x = torch.roll(x, shift, dims=-1) + 0.1 * torch.randn(x.shape, generator=g)
            for group in opt.param_groups:
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = scorer_loss(net(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            progress.update(task, advance=1, info=f"loss {loss.item():.3f}")
            if (step + 1) % 200 == 0 or step + 1 == steps:
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step + 1, "config": net.config,
                            "settings": settings}, ckpt)
    scorer = ToyScorer(net.eval(), mel)
    scorer.save_pretrained(folder)
    test = load_split(out, "test")
    with torch.no_grad():
        for view, truth in (("log_mel", "targets"), ("log_mel_gl", "targets_gl")):
            probs = atom_probabilities(net(mel.normalize(test[view].float())))
            acc = atom_accuracy(probs, test[truth])
            print(f"held-out accuracy ({view}):", json.dumps({k: round(v, 3) for k, v in acc.items()}))
    return scorer


# ----------------------------------------------------------------------------- model

def eval_prompts(n: int, seed: int) -> list[str]:
    """Captions naming every attribute (no omission) of n fresh attribute draws."""
    rng = np.random.default_rng([seed, 7])
    return [caption(sample_attributes(rng), rng, omit_prob=0.0) for _ in range(n)]


def prompt_adherence(pipe: ToyPipeline, scorer: ToyScorer | None, prompts: list[str], seed: int,
                     steps: int | None = None, guidance: float | None = None, batch: int = 32,
                     judges: bool = False) -> dict[str, float]:
    """Share of generations the scorer judges correct, per concept pair (no scorer: the judges' keys only).

    Exclusive groups (tempo, mood, female/male vocal, genre): among prompts naming one value of the
    group, the share whose most probable value (restricted to the named pair for vocal) is that value.
    Instruments: among all prompts, the share where (p > 1/2) equals "the prompt names it".
    With `judges`, also the physical judges' adherence (`tada.toy.judges.adherence`, keys "judge:...").
    """
    from tada.audio import Audio

    probs, named, waves = [], [], []
    for s in range(0, len(prompts), batch):
        chunk = prompts[s:s + batch]
        gens = [torch.Generator().manual_seed(seed + s + i) for i in range(len(chunk))]
        wave = pipe(chunk, gens, num_inference_steps=steps, guidance_scale=guidance)
        if scorer is not None:
            probs.append(scorer.probabilities(Audio(wave, pipe.sample_rate)))
        waves.append(wave[:, 0].numpy())
        named.append(torch.stack([text_atoms(p) for p in chunk]))
    result = {}
    if scorer is not None:
        result.update(_scorer_adherence(torch.cat(probs), torch.cat(named)))
    if judges:
        from tada.toy import judges as physical

        result.update(physical.adherence(np.concatenate(waves), prompts, pipe.sample_rate))
    return result


def _scorer_adherence(probs: torch.Tensor, named: torch.Tensor) -> dict[str, float]:
    """prompt_adherence's scorer keys from the scorer's (N, atoms) probabilities and the prompts' named atoms."""
    index = {atom: k for k, atom in enumerate(ATOMS)}
    result = {}
    pairs = {"fast/slow": ("tempo", ("fast", "slow")), "happy/sad": ("mood", ("happy", "sad")),
             "female/male": ("vocal", ("female", "male")), "genre": ("genre", GROUPS["genre"])}
    for label, (group, values) in pairs.items():
        cols = [index[(group, v)] for v in values]
        rows = named[:, cols].sum(-1) == 1
        if rows.any():
            hit = probs[rows][:, cols].argmax(-1) == named[rows][:, cols].argmax(-1)
            result[label] = hit.float().mean().item()
    for inst in INSTRUMENTS:
        k = index[("instrument", inst)]
        result[inst] = ((probs[:, k] > 0.5) == (named[:, k] > 0.5)).float().mean().item()
    return result


def _text_states(out: Path, pipe: ToyPipeline, captions: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The MiniLM states of every training caption, cached in out/model/text_states.pt with a digest of the
    captions and token length (a cache of other captions is recomputed, never reused)."""
    cache = out / "model" / "text_states.pt"
    flat = [c for pair in captions for c in pair]
    digest = hashlib.sha256(json.dumps([pipe.max_tokens, flat]).encode()).hexdigest()
    if cache.exists():
        saved = torch.load(cache, weights_only=False)
        if saved.get("digest") == digest:
            return saved["states"], saved["mask"]
    states, masks = [], []
    with _progress() as progress:
        task = progress.add_task("encoding captions", total=len(flat), info="")
        for s in range(0, len(flat), 256):
            st, mk = pipe.encode_prompt(flat[s:s + 256])
            states.append(st.half())
            masks.append(mk)
            progress.advance(task, len(flat[s:s + 256]))
    states = torch.cat(states).view(len(captions), 2, pipe.max_tokens, TEXT_DIM)
    masks = torch.cat(masks).view(len(captions), 2, pipe.max_tokens)
    torch.save({"states": states, "mask": masks, "digest": digest}, cache)
    return states, masks


def flow_step(pipe: ToyPipeline, opt: torch.optim.Optimizer, xt: torch.Tensor, t: torch.Tensor, states: torch.Tensor,
              mask: torch.Tensor, rotary, target: torch.Tensor) -> torch.Tensor:
    """One optimizer step of the DiT on the flow loss mean ||v_theta(x_t, t, c) - (eps - x_0)||^2, gradients
    clipped to norm 1; returns the loss."""
    loss = torch.nn.functional.mse_loss(pipe.velocity(xt, t, states, mask, rotary), target)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(pipe.transformer.parameters(), 1.0)
    opt.step()
    return loss


def train_model(out: Path, steps: int, seed: int, batch: int = 32, lr: float = 5e-4, eval_every: int = 500,
                ship: Path | None = None, n_eval: int = 32, device: str = "cpu") -> ToyPipeline:
    """Rectified-flow training of the DiT; batches are drawn on the CPU (the same on every device) and moved to `device`.

    Every `eval_every` steps the EMA weights are checked on `n_eval` prompts by the scorer in out/scorer and, for
    worlds with physical judges, by the judges; without a scorer (it may be trained after the DiT) by the judges
    alone. Returns the pipeline with the EMA weights, on the CPU.
    """
    spec = get_world(world_of(out))
    scorer = ToyScorer.from_pretrained(out / "scorer") if (out / "scorer" / SCORER_CONFIG).exists() else None
    if scorer is None and not spec.judged:
        raise TadaError(f"no scorer in {out / 'scorer'}: world {spec.name} has no physical judges, so its in-training "
                        f"checks need one (python -m tada.toy.train scorer --out {out})")
    folder = out / "model"
    folder.mkdir(parents=True, exist_ok=True)
    mel = data_mel(out)
    data = load_split(out, "train", round_trip=False)
    x_all = mel.normalize(data["log_mel"].float())
    ckpt, start = folder / "checkpoint.pt", 0
    state = torch.load(ckpt, weights_only=False, map_location="cpu") if ckpt.exists() else None
    latent = None
    if spec.latent_components is not None:  # fitted once; a resumed run keeps the latent it started with
        latent = (LinearLatent(state["latent"]["basis"], state["latent"]["scale"]) if state and "latent" in state
                  else LinearLatent.fit(x_all, spec.latent_components))
        x_all = latent.encode(x_all)
    pipe = spec.random_pipeline(seed, mel, latent)
    states_all, mask_all = _text_states(out, pipe, data["captions"])
    net = pipe.transformer.to(device)
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    settings = {"seed": seed, "batch": batch, "lr": lr, "transformer": dict(net.config), "time_shift": pipe.time_shift,
                "preconditioned": pipe.preconditioned, "clips": len(x_all), "latent": spec.latent_components}
    if state is not None:
        # settings from before latents and preconditioning had neither
        if {"latent": None, "preconditioned": False, **state.get("settings", {})} != settings:
            raise TadaError(f"{ckpt} was trained with other settings ({state.get('settings')}; this run: {settings}):"
                            " move it away or use another --out")
        net.load_state_dict(state["net"]), opt.load_state_dict(state["opt"])
        ema = {k: v.to(device) for k, v in state["ema"].items()}
        start = state["step"]
    saved_latent = {} if latent is None else {"latent": {"basis": latent.basis, "scale": latent.scale}}
    uncond_states, uncond_mask = pipe.unconditional_context(batch)
    rotary = pipe.rotary_embedding()
    log = (folder / "log.jsonl").open("a")

    def evaluate(step: int) -> None:
        live = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(ema)
        net.eval()
        adherence = prompt_adherence(pipe, scorer, eval_prompts(n_eval, seed), seed=seed, judges=spec.judged)
        pipe.save_pretrained(folder / "latest")
        if ship is not None:
            pipe.save_pretrained(ship)
        net.load_state_dict(live)
        net.train()
        line = {"step": step, **{k: round(v, 3) for k, v in adherence.items()}}
        log.write(json.dumps(line) + "\n")
        log.flush()
        print("prompt adherence", json.dumps(line), flush=True)

    net.train()
    with _progress() as progress:
        task = progress.add_task("training model", total=steps, completed=start, info="")
        for step in range(start, steps):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            idx = torch.randint(len(x_all), (batch,), generator=g)
            which = torch.randint(0, 2, (batch,), generator=g)
            x0 = x_all[idx]
            states = states_all[idx, which].float()
            mask = mask_all[idx, which]
            drop = torch.rand(batch, generator=g) < 0.1
            states = torch.where(drop[:, None, None], uncond_states, states)
            mask = torch.where(drop[:, None], uncond_mask, mask)
            t = shift_time(torch.sigmoid(torch.randn(batch, generator=g)), pipe.time_shift)
            eps = torch.randn(x0.shape, generator=g)
            xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * eps
            for group in opt.param_groups:  # constant after warm-up: stopping at N == training with --steps N
                group["lr"] = lr * min(1.0, (step + 1) / 300)
            xt, t, states, mask, target = (v.to(device) for v in (xt, t, states, mask, eps - x0))
            loss = flow_step(pipe, opt, xt, t, states, mask, rotary, target)
            with torch.no_grad():
                decay = min(0.999, (1 + step) / (10 + step))
                for k, v in net.state_dict().items():
                    ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            progress.update(task, advance=1, info=f"loss {loss.item():.3f}")
            running = loss.item() if step == start else 0.98 * running + 0.02 * loss.item()
            if (step + 1) % 100 == 0:
                progress.console.print(f"step {step + 1} loss {running:.4f}")
            if (step + 1) % 250 == 0 or step + 1 == steps:
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "ema": ema, "step": step + 1,
                            "settings": settings, **saved_latent}, ckpt)
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                evaluate(step + 1)
    net.load_state_dict(ema)
    pipe.transformer = net.cpu().eval()
    return pipe


# ----------------------------------------------------------------------------- CLI

OutOpt = typer.Option(Path("runs/toy"), "--out", help="working folder (data, checkpoints, logs)")
SeedOpt = typer.Option(0, "--seed")
ThreadsOpt = typer.Option(1, "--threads", min=1, help="torch threads")


def _setup(threads: int) -> None:
    """One thread by default: on two cores shared with other work it ran 2-10x faster than two."""
    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


WorldOpt = typer.Option("v1", "--world", help="toy world: v1 (tada.toy.synth) or v2 (tada.toy.world)")


WorkersOpt = typer.Option(1, "--workers", min=1, help="processes rendering chunks of clips side by side (one core each)")


@app.command()
def data(out: Path = OutOpt, n_train: int = typer.Option(3500, min=1), n_test: int = typer.Option(500, min=1),
         n_extra: int = typer.Option(2000, min=0), threads: int = ThreadsOpt,
         world: str = WorldOpt, workers: int = WorkersOpt):
    """Render the synthetic training, held-out and scorer-only clips (later stages read the world from --out)."""
    _setup(threads)
    build_data(out, n_train, n_test, n_extra, world, workers)


@app.command()
def scorer(out: Path = OutOpt, steps: int = typer.Option(8000, min=1), seed: int = SeedOpt, threads: int = ThreadsOpt,
           ship: Path | None = typer.Option(None, help="also save the scorer here (e.g. src/tada/toy/weights)")):
    """Train the attribute scorer on the rendered clips and print its held-out accuracy."""
    _setup(threads)
    trained = train_scorer(out, steps, seed)
    if ship is not None:
        trained.save_pretrained(ship)


def training_device(name: str) -> str:
    """`name` as torch spells it, refused in one line when torch does not know it or this machine lacks it."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise TadaError(f"--device {name!r} is not a device torch knows (cpu, cuda, cuda:1, ...): {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TadaError(f"--device {name!r}: this machine has no CUDA GPU; use --device cpu")
    return str(device)


DeviceOpt = typer.Option("cpu", "--device", help="where the DiT trains: cpu, cuda, cuda:1, ... (batches and "
                                                 "checkpoints are the same on every device)")


@app.command()
def model(out: Path = OutOpt, steps: int = typer.Option(5500, min=1), seed: int = SeedOpt,
          batch: int = typer.Option(32, min=1), eval_every: int = typer.Option(500, min=1), threads: int = ThreadsOpt,
          ship: Path | None = typer.Option(None, help="also save the pipeline here at each evaluation"),
          device: str = DeviceOpt):
    """Train the DiT (rectified flow, 10% caption dropout), printing loss and prompt adherence."""
    device = training_device(device)
    _setup(threads)
    train_model(out, steps, seed, batch=batch, eval_every=eval_every, ship=ship, device=device)


@app.command()
def evaluate(weights: Path | None = typer.Option(None, help="pipeline + scorer folder (default: shipped weights)"),
             n: int = typer.Option(192, min=1), seed: int = 12345, steps: int | None = typer.Option(None, min=1),
             guidance: float | None = None, threads: int = ThreadsOpt, out_json: Path | None = None,
             judges: bool = typer.Option(False, help="also judge by physics (tada.toy.judges)"),
             scorer_path: Path | None = typer.Option(None, "--scorer", help="scorer folder (default: --weights)")):
    """Prompt adherence of unsteered generations on `n` fresh full captions, per concept pair."""
    _setup(threads)
    pipe = ToyPipeline.from_pretrained(weights)
    judge = ToyScorer.from_pretrained(scorer_path if scorer_path is not None else weights)
    result = prompt_adherence(pipe, judge, eval_prompts(n, seed), seed=seed, steps=steps, guidance=guidance,
                              judges=judges)
    text = json.dumps({k: round(v, 3) for k, v in result.items()}, indent=1)
    print(text)
    if out_json is not None:
        out_json.write_text(text)


@app.command(name="all")
def all_stages(out: Path = OutOpt, seed: int = SeedOpt, model_steps: int = typer.Option(5500, min=1),
               scorer_steps: int = typer.Option(8000, min=1), threads: int = ThreadsOpt,
               ship: Path | None = typer.Option(None, help="folder to save the shipped weights into"),
               world: str = WorldOpt, device: str = DeviceOpt, workers: int = WorkersOpt):
    """data, then scorer, then model."""
    device = training_device(device)
    _setup(threads)
    build_data(out, 3500, 500, 2000, world, workers)
    trained = train_scorer(out, scorer_steps, seed)
    if ship is not None:
        trained.save_pretrained(ship)
    train_model(out, model_steps, seed, ship=ship, device=device)


def main():
    """Entry point: bad input (e.g. a rerun with other settings) as one line ``error: ...``, exit code 2."""
    run_command(app)


if __name__ == "__main__":
    main()
