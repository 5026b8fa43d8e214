"""Every steering method behind one interface: alpha = 0 is plain generation, artifacts round-trip and are
refused on another model or site layout, and each method's maths checked by hand on the toy model."""

import json

import pytest
import torch

import tada
from tada.engine import Capture, ExtraPasses, Intervention, PatchContext
from tada.errors import TadaError
from tada.methods import base
from tada.methods.austeer import AUSteer, top_k_units
from tada.methods.vector import SteeringVector
from tada.sae import SaeConfig, TopKSAE

STEPS = 3
P, N = "a fast piano piece with drums", "a slow piano piece"
PAIRS = [("fast piano", "slow piano"), ("fast jazz with drums", "slow jazz with drums")]


@pytest.fixture(scope="module")
def toy():
    return tada.load("toy")


def wave(model, prompts, seeds=0, steer=(), interventions=(), **kw):
    prompts = [prompts] if isinstance(prompts, str) else prompts
    return model.generate(prompts, seeds, steps=kw.pop("steps", STEPS), steer=list(steer),
                          interventions=list(interventions), **kw).waveform


@pytest.fixture(scope="module")
def sae_folder(toy, tmp_path_factory):
    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=toy.sites[3].dim, expansion_factor=2, k=4))
    return sae.save(tmp_path_factory.mktemp("sae"))


@pytest.fixture(scope="module")
def artifacts(toy, sae_folder):
    """One fitted artifact of every method (small fits on the toy)."""
    table = base.methods()
    fits = {
        "caa": dict(concept=PAIRS, sites=[2, 3], steps=STEPS),
        "sae": dict(concept=PAIRS, sites=[3], sae=sae_folder, tau=3, steps=STEPS),
        "austeer": dict(concept=PAIRS, sites=[2, 3], k=16, steps=STEPS),
        "pci": dict(concept="tempo", sites="all"),
        "text_embedding": dict(concept="tempo", sites=[2, 3]),
        "freesliders": dict(concept="tempo", sites="all"),
    }
    if "token_embedding" in table:
        fits["token_embedding"] = dict(concept=(P, N), sites="all", generic="piece")
    if "concept_sliders" in table:
        fits["concept_sliders"] = dict(concept="tempo", sites=[2, 3], iterations=10, steps=STEPS, n_prompts=2)
    assert set(fits) == set(table), "every registered method needs a fit here"
    return {name: table[name].cls.fit(toy, **kw) for name, kw in fits.items()}


def strength(name):
    return 2 if name == "pci" else 0.5


def test_registry_lists_every_method_with_a_description():
    table = base.methods()
    for name in ("caa", "sae", "austeer", "pci", "text_embedding", "freesliders"):
        assert name in table and table[name].description and table[name].cost
    with pytest.raises(TadaError, match="no steering method 'nope'"):
        base.method("nope")


def test_alpha_zero_is_bit_identical_to_plain_for_every_method(toy, artifacts):
    plain = wave(toy, N)
    for name, art in artifacts.items():
        assert torch.equal(wave(toy, N, steer=[art.at(0)]), plain), name
        assert torch.equal(wave(toy, [N, P], [0, 1], steer=[art.at([0, 0])]), wave(toy, [N, P], [0, 1])), name
        steered = wave(toy, N, steer=[art.at(strength(name))])
        assert not torch.equal(steered, plain), f"{name} at alpha {strength(name)} changed nothing"


def test_one_batch_holds_an_alpha_sweep(toy, artifacts):
    """Rows of a batch with alphas [0, a] equal rows of the batches with one alpha each (same batch size)."""
    for name in ("caa", "austeer", "pci", "text_embedding"):
        art, a = artifacts[name], strength(name)
        sweep = wave(toy, [N, N], [0, 0], steer=[art.at([0, a])])
        assert torch.equal(sweep[0], wave(toy, [N, N], [0, 0])[0]), name
        assert torch.equal(sweep[1], wave(toy, [N, N], [0, 0], steer=[art.at([a, a])])[1]), name


def test_save_load_round_trip_for_every_method(toy, artifacts, tmp_path):
    for name, art in artifacts.items():
        path = art.save(tmp_path / f"{name}.v1")
        assert path.name == f"{name}.v1.safetensors"
        back = base.load(path, toy)
        assert back.content_hash() == art.content_hash(), name
        assert back.method == name
        a = strength(name)
        assert torch.equal(wave(toy, N, steer=[back.at(a)]), wave(toy, N, steer=[art.at(a)])), name
        header = json.loads(path.with_suffix(".json").read_text())
        assert header["model"] == "toy" and header["library_version"] == tada.__version__
        sites = header.get("sites")
        assert sites and all({"index", "name", "width"} <= set(s) for s in sites), name


def test_existing_steering_vector_files_still_load(toy, tmp_path):
    vec = SteeringVector({2: torch.randn(toy.sites[2].dim)}, {2: toy.sites[2].name}, renorm=True,
                         meta={"model": "toy", "method": "caa"})
    path = vec.save(tmp_path / "old")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.pop("sites")  # a file written before site widths were recorded
    path.with_suffix(".json").write_text(json.dumps(meta))
    back = base.load(path, toy)
    assert isinstance(back, SteeringVector) and torch.equal(back.vectors[2], vec.vectors[2])


def test_an_artifact_of_another_model_or_layout_is_refused(toy, artifacts, tmp_path):
    other = tada.load("tiny-stable-audio")
    for name, art in artifacts.items():
        path = art.save(tmp_path / name)
        with pytest.raises(TadaError, match=r"toy.*tiny-stable-audio|tiny-stable-audio.*toy|site"):
            base.load(path, other)
        if name in ("caa", "sae"):
            continue  # SteeringVector files: their own test file checks renamed sites and widths
        header = json.loads(path.with_suffix(".json").read_text())
        header["sites"][0]["name"] = "blocks.0.cross"
        path.with_suffix(".json").write_text(json.dumps(header))
        with pytest.raises(TadaError, match=r"'blocks.0.cross'.*transformer_blocks"):
            base.load(path, toy)
        header["sites"][0]["name"] = toy.sites[header["sites"][0]["index"]].name
        header["sites"][0]["width"] += 1
        path.with_suffix(".json").write_text(json.dumps(header))
        with pytest.raises(TadaError, match=r"width \d+\).*width \d+\)"):
            base.load(path, toy)


def test_concepts_as_catalogue_concept_and_explicit_prompts(toy):
    from tada.concepts import load_catalogue

    by_name = base.concept_prompts("tempo")
    by_concept = base.concept_prompts(load_catalogue()["tempo"])
    assert by_name == by_concept and by_name.templates
    pos, neg = by_name.positive_negative(["a jazz piece"])
    assert pos == ["a jazz piece with a fast tempo"] and neg == ["a jazz piece with a slow tempo"]
    fixed = base.concept_prompts((P, N, "a piano piece"))
    assert fixed.pairs == ((P, N),) and fixed.templates is None and fixed.neutral == "a piano piece"
    assert fixed.positive_negative(["x", "y"]) == ([P, P], [N, N])
    tpl = base.concept_prompts(("{base} with violin", "{base} with trumpet"))
    assert tpl.positive_negative(["jazz"]) == (["jazz with violin"], ["jazz with trumpet"])
    with pytest.raises(TadaError, match="both"):
        base.concept_prompts(("{base} with violin", "trumpet"))


def test_sites_from_a_layer_impact_top_k(toy):
    import pandas as pd

    from tada.localization.impact import LayerImpact

    table = pd.DataFrame({"concept": ["tempo"] * 3, "layer": [1, 4, 6], "impact": [0.1, 0.9, 0.5],
                          "ci_low": [0] * 3, "ci_high": [1] * 3, "units": [1] * 3})
    art = base.method("pci").cls.fit(toy, "tempo", sites=LayerImpact(table), top_k=2)
    assert art.sites == [4, 6] and art.settings["localized"]


# --------------------------------------------------------------------------------------------- AUSteer
def test_austeer_keeps_exactly_k_units_by_magnitude():
    v = torch.tensor([0.1, -3.0, 2.0, 0.5, -0.2])
    assert torch.equal(top_k_units(v, 2), torch.tensor([0.0, -3.0, 2.0, 0.0, 0.0]))
    assert torch.equal(top_k_units(v, 99), v)  # capped at the width


def test_austeer_fit_and_application_touch_exactly_k_dimensions(toy, artifacts):
    art = artifacts["austeer"]
    caa = artifacts["caa"]
    for s in art.sites:
        d = art.direction(s)
        assert int((d != 0).sum()) == 16
        assert set(d.nonzero().flatten().tolist()) == set(caa.vectors[s].abs().topk(16).indices.tolist())
        torch.testing.assert_close(d.norm(), torch.tensor(1.0))
    full = AUSteer.fit(toy, PAIRS, sites=[2], steps=STEPS)  # default k = 256, capped at the width
    assert int((full.direction(2) != 0).sum()) == min(256, toy.sites[2].dim)

    # at one step the chosen site's input is the plain one, so its output differs in the k units only
    for mode in ("add", "scale"):
        a = AUSteer(art.tensors, art.site_info, dict(art.settings, mode=mode), art.concept, art.model)
        before, after = Capture([2], reduce=None), Capture([2], reduce=None)
        ivs = [before, *a.at(1.5).interventions(toy, [N], 1), after]
        toy.generate([N], [0], steps=1, interventions=ivs)
        h, h2 = before.result[2][0, 1:], after.result[2][0, 1:]
        changed = (h != h2).any(0)
        chosen = art.direction(2) != 0
        assert not changed[~chosen].any() and changed[chosen].all()
        if mode == "scale":
            torch.testing.assert_close(h2[:, chosen], h[:, chosen] * (1 + 1.5 * torch.sign(art.direction(2)[chosen])))
        else:
            torch.testing.assert_close(h2 - h, (1.5 * art.direction(2)).expand_as(h))


# --------------------------------------------------------------------------------------------- PCI
def test_pci_at_n_steps_is_the_positive_or_negative_prompt_and_at_zero_the_neutral(toy):
    pci = base.method("pci").cls.fit(toy, (P, N))
    assert torch.equal(wave(toy, "a piano", steer=[pci.at(STEPS)]), wave(toy, P))
    assert torch.equal(wave(toy, "a piano", steer=[pci.at(-STEPS)]), wave(toy, N))
    assert torch.equal(wave(toy, "a piano", steer=[pci.at(0)]), wave(toy, "a piano"))
    with pytest.raises(TadaError, match="at most the 3 steps"):
        wave(toy, "a piano", steer=[pci.at(STEPS + 1)])
    with pytest.raises(TadaError, match="whole number"):
        wave(toy, "a piano", steer=[pci.at(1.5)])


def test_pci_switches_at_step_n_minus_alpha_only_at_the_chosen_sites(toy):
    pci = base.method("pci").cls.fit(toy, "tempo", sites=[3, 5])
    prompt = "a jazz piece"
    pos, neg = pci.prompts_for([prompt])
    by_hand = PatchContext(toy.encode(pos), [3, 5], start=STEPS - 2)
    assert torch.equal(wave(toy, prompt, steer=[pci.at(2)]), wave(toy, prompt, interventions=[by_hand]))
    by_hand = PatchContext(toy.encode(neg), [3, 5], start=STEPS - 1)
    assert torch.equal(wave(toy, prompt, steer=[pci.at(-1)]), wave(toy, prompt, interventions=[by_hand]))


# --------------------------------------------------------------------------------------------- text embedding
def test_text_embedding_at_one_with_neutral_negative_is_patching_the_positive(toy):
    te = base.method("text_embedding").cls.fit(toy, (P, N))  # fixed prompts; the generation prompt is N
    patched = wave(toy, N, interventions=[PatchContext(toy.encode([P]), "all")])
    assert torch.equal(wave(toy, N, steer=[te.at(1.0)]), patched)
    assert torch.equal(patched, wave(toy, P))  # the toy's text reaches it only through its sites


def test_text_embedding_context_is_neutral_plus_alpha_difference(toy):
    te = base.method("text_embedding").cls.fit(toy, "tempo", sites=[4], start=1)
    prompt = "a jazz piece"
    (iv,) = te.at(-0.7).interventions(toy, [prompt], STEPS)
    pos, neg = te.prompts_for([prompt])
    c = {k: toy.encode(p).contexts[(4, "cond")] for k, p in (("n", [prompt]), ("p", pos), ("g", neg))}
    ctx, mask = iv.source.contexts[(4, "cond")]
    expected = (c["n"][0].double() - 0.7 * (c["p"][0].double() - c["g"][0].double())).float()
    assert torch.equal(ctx, expected)
    assert torch.equal(mask, c["n"][1] | c["p"][1] | c["g"][1])
    assert iv.start == 1 and set(iv.source.contexts) == {(4, "cond")}


# --------------------------------------------------------------------------------------------- FreeSliders
def test_freesliders_with_equal_prompts_is_the_neutral_generation(toy):
    fs = base.method("freesliders").cls.fit(toy, (P, P))
    one, five = wave(toy, N, steer=[fs.at(1.0)]), wave(toy, N, steer=[fs.at(5.0)])
    assert torch.equal(one, five)  # eps_pos - eps_neg is exactly zero, whatever alpha
    # equal to plain up to the rounding of a larger denoiser batch (the toy's kernels are not batch-invariant)
    assert (one - wave(toy, N)).abs().mean() < 0.05 * (wave(toy, P) - wave(toy, N)).abs().mean()


def test_freesliders_unguided_with_neutral_negative_is_the_positive_prediction(toy):
    """Without guidance eps' = eps_n + 1 (eps_p - eps_n) = eps_p: the positive prompt's generation."""
    fs = base.method("freesliders").cls.fit(toy, (P, N))
    steered, pos, neutral = (wave(toy, p, steer=s, guidance=1.0) for p, s in ((N, [fs.at(1.0)]), (P, []), (N, [])))
    # equal up to the rounding of a larger denoiser batch, which Griffin-Lim's phase search spreads in time
    assert (steered - pos).abs().mean() < 0.05 * (pos - neutral).abs().mean()


def test_freesliders_prediction_by_hand(toy):
    """At one guided step, the extended call's prediction is guided(neutral) + alpha (eps_pos - eps_neg)."""
    pos, neg = toy.encode([P]), toy.encode(["a quiet flute"])
    calls = []

    class Observe(Intervention):  # sees the denoiser's output after the interventions installed before it
        def install(self, gen):
            def record(module, args, kwargs, output):
                calls.append((kwargs["hidden_states"].shape[0], output.sample.clone()))
            return [gen.model.denoiser.register_forward_hook(record, with_kwargs=True)]

    wave(toy, N, interventions=[ExtraPasses(pos, neg, alpha=2.0), Observe()], steps=1)
    wave(toy, N, interventions=[Observe()], steps=1)
    wave(toy, [N, P, "a quiet flute"], [0, 0, 0], interventions=[Observe()], steps=1, guidance=1.0)
    (n_ext, steered), (n_plain, plain), (_, three) = calls
    assert n_ext == 4 and n_plain == 2 and steered.shape == plain.shape  # [uncond, cond] + [pos, neg] in one call
    eps_p, eps_g = three[1], three[2]
    torch.testing.assert_close(steered[0], plain[0] + 2.0 * (eps_p - eps_g), rtol=0, atol=1e-4)
    torch.testing.assert_close(steered[1], plain[1] + 2.0 * (eps_p - eps_g), rtol=0, atol=1e-4)
    assert (eps_p - eps_g).abs().max() > 1e-2


def test_freesliders_localized_extra_passes_differ_only_at_the_chosen_sites(toy):
    fs_all = base.method("freesliders").cls.fit(toy, "tempo", sites="all")
    fs_loc = base.method("freesliders").cls.fit(toy, "tempo", sites=[3])
    assert fs_loc.settings["localized"] and not fs_all.settings["localized"]
    (iv,) = fs_loc.at(1.0).interventions(toy, ["a jazz piece"], STEPS)
    assert iv.sites == [3]
    a, b = wave(toy, "a jazz piece", steer=[fs_all.at(3.0)]), wave(toy, "a jazz piece", steer=[fs_loc.at(3.0)])
    assert not torch.equal(a, b)


def test_freesliders_start_step_leaves_earlier_steps_alone(toy):
    fs = base.method("freesliders").cls.fit(toy, "tempo", start=STEPS)  # past the last step: never applies
    assert torch.equal(wave(toy, "a jazz piece", steer=[fs.at(3.0)]), wave(toy, "a jazz piece"))


# --------------------------------------------------------------------------------------------- composition
def test_composed_steers_equal_their_interventions_in_sequence(toy, artifacts):
    te, au, fs = artifacts["text_embedding"], artifacts["austeer"], artifacts["freesliders"]
    composed = wave(toy, N, steer=[te.at(0.5), au.at(2.0)])
    ivs = te.at(0.5).interventions(toy, [N], STEPS) + au.at(2.0).interventions(toy, [N], STEPS)
    assert torch.equal(composed, wave(toy, N, interventions=ivs))
    assert not torch.equal(composed, wave(toy, N, steer=[te.at(0.5)]))
    wave(toy, N, steer=[fs.at(1.0), au.at(2.0)])  # an extended call composes with a site vector


def test_two_additive_methods_at_one_site_add_up(toy, artifacts):
    """h + a1 v1 + a2 v2 (SAE eq. 8 and additive AUSteer at site 3) is one vector a1 v1 + a2 v2."""
    sae, au = artifacts["sae"], artifacts["austeer"]
    v = 0.5 * sae.vectors[3] + 2.0 * au.direction(3)
    one = SteeringVector({3: v}, {3: toy.sites[3].name}, renorm=False, meta={"model": "toy"})
    au3 = AUSteer({"site.3": au.direction(3)}, {3: au.site_info[3]}, au.settings, au.concept, au.model)
    outs = []
    for steers in ([sae.at(0.5), au3.at(2.0)], [one.at(1.0)]):
        cap = Capture([3], reduce=None)  # after the steers: their result at the site, at the first step
        ivs = [iv for st in steers for iv in st.interventions(toy, [N], 1)] + [cap]
        toy.generate([N], [0], steps=1, interventions=ivs)
        outs.append(cap.result[3])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    assert torch.equal(wave(toy, N, steer=[sae.at(0.5), au3.at(2.0)]),
                       wave(toy, N, interventions=sae.at(0.5).interventions(toy, [N], STEPS)
                            + au3.at(2.0).interventions(toy, [N], STEPS)))


def test_two_freesliders_compose_by_adding_their_shifts(toy):
    f1 = base.method("freesliders").cls.fit(toy, (P, N))
    f2 = base.method("freesliders").cls.fit(toy, (P, P))  # a zero shift
    both, first = wave(toy, N, steer=[f1.at(1.0), f2.at(3.0)]), wave(toy, N, steer=[f1.at(1.0)])
    assert (both - first).abs().mean() < 0.05 * (first - wave(toy, N)).abs().mean()


@pytest.mark.parametrize("family", ["tiny-stable-audio", "tiny-ace-step"])
def test_prompt_methods_work_on_tiny_real_families(family):
    """ACE-Step pads text to its batch with no mask: a steered generation is encoded at the length of every
    prompt it patches in, as one pipeline batch of them would be, so PCI at N steps is the positive prompt."""
    m = tada.load(family)
    pci = base.method("pci").cls.fit(m, (P, N))
    assert torch.equal(wave(m, "a piano", steer=[pci.at(STEPS)]), wave(m, P))
    assert torch.equal(wave(m, "a piano", steer=[pci.at(0)]), wave(m, "a piano"))
    fs = base.method("freesliders").cls.fit(m, (P, P))
    one, two = wave(m, N, steer=[fs.at(1.0)]), wave(m, N, steer=[fs.at(2.0)])
    assert torch.equal(one, two)
    te = base.method("text_embedding").cls.fit(m, "tempo")
    assert not torch.equal(wave(m, "a jazz piece", steer=[te.at(1.0)]), wave(m, "a jazz piece"))


def test_a_longer_injected_prompt_than_audioldm2_attends_to_is_refused_clearly():
    m = tada.load("tiny-audioldm2")
    pci = base.method("pci").cls.fit(m, (P, N))
    with pytest.raises(TadaError, match="unmasked tokens, more than"):
        wave(m, N, steer=[pci.at(STEPS)])


# --------------------------------------------------------------------------------------------- token embedding
def test_token_embedding_finds_the_differing_words():
    from tada.methods.token_embedding import differing_span

    pos, neg = "a jazz piece with a fast tempo", "a jazz piece with a slow tempo"
    (a, b), (c, d) = differing_span(pos, neg)
    assert pos[a:b] == "fast" and neg[c:d] == "slow"
    with pytest.raises(TadaError, match="differ"):
        differing_span("same words", "same words")


def test_token_embedding_direction_and_application_by_hand(toy):
    from tada.methods.token_embedding import TokenEmbedding, token_positions

    te = TokenEmbedding.fit(toy, "tempo", sites=[1, 4], n_pairs=2)
    assert te.settings["generic"] == "song"
    pairs = te.concept.pairs
    assert len(pairs) == 2
    c_pos, c_neg = toy.encode([p for p, _ in pairs]), toy.encode([n for _, n in pairs])
    for s in (1, 4):
        diffs = []
        for i, (p, n) in enumerate(pairs):
            word_p = next(w for w in ("fast", "quick") if w in p)
            word_n = next(w for w in ("slow",) if w in n)
            tp = token_positions(toy, p, p.index(word_p), p.index(word_p) + len(word_p))
            tn = token_positions(toy, n, n.index(word_n), n.index(word_n) + len(word_n))
            diffs.append(c_pos.contexts[(s, "cond")][0][i, tp].double().mean(0)
                         - c_neg.contexts[(s, "cond")][0][i, tn].double().mean(0))
        torch.testing.assert_close(te.tensors[f"site.{s}"], torch.stack(diffs).mean(0).float())

    prompt = "a calm song for the evening"
    (iv,) = te.at(3.0).interventions(toy, [prompt], STEPS)
    where = token_positions(toy, prompt, prompt.index("song"), prompt.index("song") + 4)
    plain_ctx = toy.encode([prompt]).contexts
    for s in (1, 4):
        ctx, _ = iv.source.contexts[(s, "cond")]
        expected = plain_ctx[(s, "cond")][0].clone()
        expected[0, where] = (expected[0, where].double() + 3.0 * te.tensors[f"site.{s}"].double()).float()
        assert torch.equal(ctx, expected)
    with pytest.warns(UserWarning, match="no word 'song'.*last token"):
        (iv,) = te.at(2.0).interventions(toy, ["a jazz piece"], STEPS)
    last = token_positions(toy, "a jazz piece", 7, 12)[-1:]
    ctx, _ = iv.source.contexts[(1, "cond")]
    expected = toy.encode(["a jazz piece"]).contexts[(1, "cond")][0].clone()
    expected[0, last] = (expected[0, last].double() + 2.0 * te.tensors["site.1"].double()).float()
    assert torch.equal(ctx, expected)
    strict = TokenEmbedding.fit(toy, "tempo", sites=[1], n_pairs=1, fallback="refuse")
    with pytest.raises(TadaError, match="does not contain"):
        strict.at(1.0).interventions(toy, ["a jazz piece"], STEPS)
    with pytest.raises(TadaError, match="fallback must be one of last, refuse; got 'first'"):
        TokenEmbedding.fit(toy, "tempo", sites=[1], n_pairs=1, fallback="first")


def test_token_embedding_refuses_a_family_without_token_positions():
    from tada.methods.token_embedding import TokenEmbedding

    with pytest.raises(TadaError, match="tokens at their own positions"):
        TokenEmbedding.fit(tada.load("tiny-audioldm2"), "tempo", sites=[0], n_pairs=1)


# --------------------------------------------------------------------------------------------- Concept Sliders
def test_low_rank_delta_by_hand(toy):
    from tada.engine import LowRankDelta, intervene
    from tada.engine.lowrank import projection

    lin = projection(toy.sites[2].module, "to_q")
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(3, lin.in_features, generator=g), torch.randn(lin.out_features, 3, generator=g)
    x = torch.randn(2, 5, lin.in_features, generator=g)
    base_y = lin(x)
    with torch.no_grad(), intervene(toy, 2, [LowRankDelta({(2, "to_q"): (A, B)}, [0.5, 2.0], scale=0.25)]):
        y = lin(x)
    a = torch.tensor([0.5, 2.0]).view(2, 1, 1) * 0.25
    torch.testing.assert_close(y, base_y + a * (x @ A.T @ B.T))
    with torch.no_grad(), intervene(toy, 2, [LowRankDelta({(2, "to_q"): (A, B)}, 1.0, scale=0.0)]):
        assert torch.equal(lin(x), base_y)  # the adapter at scale 0 is the base model


def test_concept_slider_at_scale_zero_is_the_base_model_and_training_lowers_the_loss(toy, artifacts):
    cs = artifacts["concept_sliders"]
    assert {k.split(".")[1] for k in cs.tensors} == {"2", "3"}  # localized: adapters only on the chosen sites
    assert {k.split(".", 2)[2] for k in cs.tensors} == {f"{p}.{ab}" for p in ("to_q", "to_k", "to_v", "to_out.0")
                                                        for ab in "AB"}
    assert torch.equal(wave(toy, "a jazz piece", steer=[cs.at(0.0)]), wave(toy, "a jazz piece"))
    untrained = base.method("concept_sliders").cls.fit(toy, "tempo", sites=[2, 3], iterations=0, steps=STEPS,
                                                      n_prompts=2)
    assert all(not t.any() for k, t in untrained.tensors.items() if k.endswith(".B"))  # B starts at zero
    assert torch.equal(wave(toy, "a jazz piece", steer=[untrained.at(5.0)]), wave(toy, "a jazz piece"))
    longer = base.method("concept_sliders").cls.fit(toy, "tempo", sites=[2, 3], iterations=40, steps=STEPS,
                                                   n_prompts=2, lr=3e-3)
    losses = longer.meta["losses"]
    assert sum(losses[-10:]) < sum(losses[:10])


def test_concept_slider_training_resumes_where_it_stopped(toy, tmp_path, monkeypatch):
    fit = base.method("concept_sliders").cls.fit
    kw = dict(concept="tempo", sites=[3], iterations=6, steps=2, n_prompts=1, save_every=2)
    straight = fit(toy, **kw)
    ckpt = tmp_path / "slider.ckpt"
    calls = {"n": 0}
    step = torch.optim.Adam.step

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        fit(toy, checkpoint=ckpt, **kw)
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    assert torch.load(ckpt, weights_only=False)["iteration"] == 4
    resumed = fit(toy, checkpoint=ckpt, **kw)
    for k in straight.tensors:
        assert torch.equal(straight.tensors[k], resumed.tensors[k]), k
    with pytest.raises(TadaError, match="other settings"):
        fit(toy, checkpoint=ckpt, **dict(kw, eta=2.0))


def test_capture_during_extra_passes_records_the_pipelines_own_rows(toy):
    fs = base.method("freesliders").cls.fit(toy, "tempo")
    cap = Capture([2])
    toy.generate(["a jazz piece", "a rock song"], [0, 1], steps=2, steer=[fs.at(1.0)], interventions=[cap])
    assert cap.result[2].shape == (2, toy.sites[2].dim)
