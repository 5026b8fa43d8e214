"""`tada studio`: the Gradio app over a :class:`~tada.studio.session.Studio`.

Generate tab: prompt, seed, steps, duration, an optional timestep window, and one slider per steering artifact
(several at once compose); the steered clip next to the alpha = 0 clip of the same seed, both spectrograms, and the WAV and its settings to download.
Each slider runs over its method's own default sweep (`tada methods`: multiples of the frame norm for CAA, SAE
and AUSteer, whole steps for prompt injection, ...). Fit tab: fit a catalogue concept with any method on the
spot with a progress bar, which adds a slider on the next start (and is usable by name at once through the API). Sweep tab: one
artifact over five strengths as a row of players with its alignment curve. Localize tab: a run folder's Impact
heatmap and table, or a small sweep of one concept run on the spot. SAE features tab (with `--sae`): the prompt
steered by one SAE feature at a chosen strength. Bad input shows as a message in the
app; the server goes on serving.
"""

from __future__ import annotations

import numpy as np

from tada.errors import TadaError
from tada.progress import listen
from tada.studio.session import Studio

SWEEP_POINTS = 5


def slider_range(studio: Studio, name: str) -> tuple[float, float, float]:
    """(minimum, maximum, step) of an artifact's slider: its method's default sweep for the model's steps."""
    from tada.methods.base import methods

    if name in studio.calibrations:  # the dial moves in the measured effect over the usable range
        cal = studio.calibrations[name]
        ends = sorted((cal.to_effect(cal.usable[0]), cal.to_effect(cal.usable[1])))
        return round(ends[0], 4), round(ends[1], 4), 0.005
    art = studio.artifacts[name]
    method = getattr(art, "method", None) or art.meta.get("method", "caa")
    info = methods().get(method, methods()["caa"])
    sweep = info.sweep(studio.model.default_steps)
    return min(sweep), max(sweep), 1.0 if info.per_step else 0.05


def parse_timing(duration: str | None, window: str | None) -> tuple[float | None, tuple[float, float] | None]:
    """The Generate tab's text fields: a duration in seconds and a timestep window "from,to" (empty: none)."""
    duration, window = (duration or "").strip(), (window or "").strip()
    try:
        seconds = float(duration) if duration else None
    except ValueError:
        raise TadaError(f"duration must be a number of seconds or empty; got {duration!r}") from None
    if not window:
        return seconds, None
    try:
        low, high = (float(t) for t in window.split(","))
    except ValueError:
        raise TadaError(f"the timestep window must be two numbers 'from,to' or empty; got {window!r}") from None
    return seconds, (low, high)


def sweep_strip(studio: Studio, name: str, prompt: str, seed: int, steps: int | None, scorer=None):
    """Five strengths across the artifact's range: their clips and the alignment curve (concept queries)."""
    from tada.concepts import load_catalogue
    from tada.evaluation.registry import default_scorer
    from tada.report.plots import alpha_curves

    if name not in studio.artifacts:
        raise TadaError(f"no steering artifact {name!r}; this studio has {', '.join(studio.artifacts) or 'none'}")
    low, high, step = slider_range(studio, name)
    alphas = [float(round(a / step) * step) for a in np.linspace(low, high, SWEEP_POINTS)]
    results = [studio.generate(prompt, seed, steps, {name: a}) for a in alphas]
    art = studio.artifacts[name]
    concept = getattr(art, "concept", None)
    concept = getattr(concept, "name", None) or art.meta.get("concept")
    curve = None
    if concept:
        import pandas as pd

        from tada.audio import Audio

        scorer = scorer or default_scorer(studio.model)
        queries = list(load_catalogue()[concept].queries.positive)
        sims = scorer.similarity(Audio.load([r.audio for r in results]), queries).mean(1).tolist()
        table = pd.DataFrame({"alpha": alphas, "alignment": sims, "prompt_index": 0, "seed": seed})
        curve = alpha_curves(table, studio.cache / f"curve-{name}-{abs(hash((prompt, seed, steps)))}.png",
                             title=f"{name}: alignment with {concept}")
    return alphas, results, curve


def build_app(studio: Studio, sae=None):
    import gradio as gr

    from tada.concepts import load_catalogue
    from tada.methods.base import methods

    names = list(studio.artifacts)

    def run(prompt, seed, steps, duration, window, units, *alphas):
        try:
            r = studio.generate(prompt, seed, steps, dict(zip(names, alphas)), units, *parse_timing(duration, window))
        except TadaError as err:
            raise gr.Error(str(err)) from None
        return str(r.audio), str(r.reference), str(r.spectrogram), str(r.reference_spectrogram), \
            [str(r.audio), str(r.settings)]

    def fit(concept, method, layers, progress=gr.Progress()):
        try:
            sites = "all" if layers.strip() in ("", "all") else [int(x) for x in layers.split(",")]
            with listen(lambda desc, done, total: progress((done, total), desc=desc)):
                name = studio.fit(concept, method, sites)
            return f"fitted {name}; restart the studio to get its slider"
        except TadaError as err:
            raise gr.Error(str(err)) from None
        except ValueError as err:
            raise gr.Error(f"layers must be all or comma-separated integers; got {layers!r} ({err})") from None

    def sweep(name, prompt, seed, steps):
        try:
            alphas, results, curve = sweep_strip(studio, name, prompt, seed, steps)
        except TadaError as err:
            raise gr.Error(str(err)) from None
        return [*(str(r.audio) for r in results), str(curve) if curve else None,
                "strengths: " + ", ".join(f"{a:+g}" for a in alphas)]

    def open_run(folder):
        from pathlib import Path

        import pandas as pd

        path = Path(folder.strip())
        if not (path / "impact.csv").is_file():
            raise gr.Error(f"{path} holds no impact.csv: give a folder written by tada localize")
        return str(path / "heatmap.png") if (path / "heatmap.png").is_file() else None, pd.read_csv(path / "impact.csv")

    def small_sweep(concept, pairs, steps, progress=gr.Progress()):
        from tada.localization import localize

        out = studio.cache / f"localize-{concept}-{int(pairs)}-{int(steps)}"
        try:
            with listen(lambda desc, done, total: progress((done, total), desc=desc)):
                localize(studio.model, concept, n_pairs=int(pairs), seeds=1, steps=int(steps), out=out)
        except TadaError as err:
            raise gr.Error(str(err)) from None
        return open_run(str(out))

    def steer_feature(feature, strength, prompt, seed, steps):
        try:
            r = studio.generate(prompt, seed, steps, {studio.add_feature(sae, feature): strength}, "norm")
        except TadaError as err:
            raise gr.Error(str(err)) from None
        return str(r.audio), str(r.reference)

    with gr.Blocks(title="tada studio") as app:
        gr.Markdown(f"# tada studio: {studio.model.name}")
        with gr.Tab("Generate"):
            with gr.Row():
                prompt = gr.Textbox(label="prompt", value="a calm jazz song with piano", scale=3)
                seed = gr.Number(label="seed", value=0, precision=0, minimum=0)
                steps = gr.Number(label="steps", value=studio.model.default_steps, precision=0, minimum=1)
                duration = gr.Textbox(label="duration in s (empty: the model's)",
                                      value="" if studio.model.default_duration is None
                                      else f"{studio.model.default_duration:g}")
                units = gr.Radio(["auto", "norm", "raw"], value="auto", label="strength units")
                window = gr.Textbox(label="steer only at timesteps from,to (the denoiser's; empty: all)", value="")
            sliders = []
            for name in names:
                low, high, step = slider_range(studio, name)
                label = f"{name} ({studio.dial} change)" if name in studio.calibrations else name
                sliders.append(gr.Slider(low, high, value=0.0, step=step, label=label))
            if not names:
                gr.Markdown("No steering artifacts: start with `--vectors DIR`, or fit one in the Fit tab.")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Row():
                steered = gr.Audio(label="steered", type="filepath")
                reference = gr.Audio(label="alpha = 0, same seed", type="filepath")
            with gr.Row():
                spec = gr.Image(label="steered: log-mel", type="filepath")
                ref_spec = gr.Image(label="alpha = 0: log-mel", type="filepath")
            files = gr.File(label="download: the WAV and the settings that reproduce it", file_count="multiple")
            button.click(run, [prompt, seed, steps, duration, window, units, *sliders],
                         [steered, reference, spec, ref_spec, files],
                         api_name="generate", concurrency_limit=None)
        with gr.Tab("Sweep"):
            which = gr.Dropdown(names, value=names[0] if names else None, label="artifact")
            go = gr.Button("Sweep")
            with gr.Row():
                players = [gr.Audio(label=f"strength {i + 1}", type="filepath") for i in range(SWEEP_POINTS)]
            curve = gr.Image(label="alignment over strength", type="filepath")
            said = gr.Markdown()
            go.click(sweep, [which, prompt, seed, steps], [*players, curve, said], api_name="sweep")
        with gr.Tab("Localize"):
            gr.Markdown("Open a `tada localize` run folder, or run a small sweep of one concept here.")
            folder = gr.Textbox(label="run folder (holds impact.csv and heatmap.png)")
            with gr.Row():
                loc_concept = gr.Dropdown(list(load_catalogue()), value="tempo", label="concept")
                loc_pairs = gr.Number(label="pairs", value=2, precision=0, minimum=1)
            with gr.Row():
                gr.Button("Open").click(open_run, folder, [heatmap := gr.Image(label="Impact (eq. 9)",
                                                                               type="filepath"),
                                                            impact := gr.Dataframe(label="impact.csv")],
                                        api_name="open_localization")
                gr.Button("Run a small sweep").click(small_sweep, [loc_concept, loc_pairs, steps], [heatmap, impact],
                                                     api_name="localize")
        if sae is not None:
            with gr.Tab("SAE features"):
                gr.Markdown("Steer the Generate tab's prompt with one SAE feature (its decoder direction, eq. 7-8); "
                            "`tada sae browse` shows what each feature does.")
                with gr.Row():
                    feature = gr.Number(label="feature", value=0, precision=0, minimum=0)
                    strength = gr.Slider(-3.0, 3.0, value=1.0, step=0.05, label="strength (x the site's frame norm)")
                f_go = gr.Button("Steer with this feature")
                with gr.Row():
                    f_steered = gr.Audio(label="steered", type="filepath")
                    f_reference = gr.Audio(label="alpha = 0, same seed", type="filepath")
                f_go.click(steer_feature, [feature, strength, prompt, seed, steps], [f_steered, f_reference],
                           api_name="sae_feature")
        with gr.Tab("Fit"):

            concept = gr.Dropdown(list(load_catalogue()), value="tempo", label="concept")
            method = gr.Dropdown([m for m in methods() if m != "sae"], value="caa", label="method")
            layers = gr.Textbox(value="all", label="layers (all, or e.g. 1,2)")
            fitted = gr.Markdown()
            gr.Button("Fit").click(fit, [concept, method, layers], fitted, api_name="fit")
    return app
