import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tada.errors import TadaError
from tada.sae import (
    SaeConfig,
    TopKSAE,
    choose_sae,
    default_lr,
    fvu,
    geometric_median,
    grid_search,
    mean_activations,
    sae_direction,
    select_features,
    tfidf_scores,
    train_sae,
)
from tada.sae.store import ActivationReader, ActivationWriter


def _hand_sae() -> TopKSAE:
    """d_in=2, 4 latents, k=2, with weights chosen so every number below is computed by hand."""
    sae = TopKSAE(SaeConfig(d_in=2, expansion_factor=2, k=2))
    with torch.no_grad():
        sae.b_dec.copy_(torch.tensor([1.0, -1.0]))
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]))
        sae.encoder.bias.copy_(torch.tensor([0.0, 0.0, 0.5, 0.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-0.8, 0.6]]))
    return sae


H = torch.tensor([[2.0, 1.0], [0.0, -3.0], [1.0, -1.0]])


def _dense(latents, indices, num_latents):
    return torch.zeros(len(latents), num_latents).scatter(1, indices, latents)


def test_eq4_topk_then_relu_on_hand_example():
    # h - b_pre = [1, 2], [-1, -2], [0, 0]; pre-acts = [1, 2, 3.5, -1], [-1, -2, -2.5, 1], [0, 0, 0.5, 0].
    latents, indices, pre_acts = _hand_sae().encode(H)
    torch.testing.assert_close(pre_acts, torch.tensor([[1, 2, 3.5, -1], [-1, -2, -2.5, 1], [0, 0, 0.5, 0]]))
    assert latents.shape == indices.shape == (3, 2) and indices.dtype == torch.int64
    # Row 2 keeps latents 3 (1.0) and 0 (-1.0, zeroed by the ReLU); row 3 keeps 2 (0.5) and a tied zero.
    expected_f = torch.tensor([[0, 2, 3.5, 0], [0, 0, 0, 1], [0, 0, 0.5, 0]])
    torch.testing.assert_close(_dense(latents, indices, 4), expected_f)
    assert set(indices[0].tolist()) == {1, 2} and set(indices[1].tolist()) == {0, 3}


def test_eq5_reconstruction_fvu_and_auxk_on_hand_example():
    sae = _hand_sae()
    out = sae(H)
    # h_hat = f W_dec + b_pre: [2*(0,1) + 3.5*(.6,.8)] + b = (3.1, 3.8); (-.8,.6) + b = (.2, -.4); .5*(.6,.8) + b = (1.3, -.6)
    expected = torch.tensor([[3.1, 3.8], [0.2, -0.4], [1.3, -0.6]])
    torch.testing.assert_close(out.h_hat, expected)
    torch.testing.assert_close(sae.decode(out.latents, out.indices), expected)
    # squared errors 9.05 + 6.8 + 0.25 = 16.1; deviations from the mean (1, -1): 5 + 5 + 0 = 10.
    torch.testing.assert_close(out.fvu, torch.tensor(1.61))
    assert out.auxk_loss.item() == 0.0
    # Dead latents 0 and 3, k_aux = d_in // 2 = 1: rows pick latent 0 (1.0), latent 3 (1.0), a zero.
    # |e_hat - e|^2: |(1,0) - (-1.1,-2.8)|^2 = 12.25; |(-.8,.6) - (-.2,-2.6)|^2 = 10.6; |(.3,.4)|^2 = .25.
    dead = torch.tensor([True, False, False, True])
    torch.testing.assert_close(sae(H, dead_mask=dead).auxk_loss, torch.tensor(23.1 / 10))


def test_fvu_definition():
    h = torch.tensor([[0.0, 2.0], [2.0, 0.0], [4.0, 4.0]])  # mean (2, 2); deviations 4+0+4 + 0+4+4 = 16
    assert fvu(h, h).item() == 0.0
    assert fvu(h, h.mean(0).expand_as(h)).item() == 1.0
    assert fvu(h, h + 1.0).item() == pytest.approx(6 / 16)


def test_geometric_median_of_a_cross_is_its_center_not_its_mean():
    # Sum of distances from (0, c): 2 sqrt(1 + c^2) + (1 - c) + (c + 5), minimal at c = 0; the mean is (0, -1).
    points = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -5.0]])
    torch.testing.assert_close(geometric_median(points), torch.zeros(2), atol=1e-6, rtol=0)
    assert geometric_median(points).dtype == torch.float32


def test_geometric_median_satisfies_first_order_condition():
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2, 3, 4, 5])
    y = geometric_median(x).double()
    diff = y - x.double()
    gradient = (diff / diff.norm(dim=1, keepdim=True)).sum(0)  # d/dy of sum |y - x_i|
    assert gradient.norm().item() < 1e-4
    with pytest.raises(ValueError, match="non-empty"):
        geometric_median(torch.empty(0, 3))


def test_tfidf_eq6_with_epsilon():
    scores = tfidf_scores(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 1.0, 3.0]), eps=0.5)
    torch.testing.assert_close(scores, torch.tensor([math.log(3.0), 2 * math.log(1 + 1 / 1.5), 0.0]))


def test_tfidf_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in shape"):
        tfidf_scores(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match=">= 0"):
        tfidf_scores(torch.tensor([1.0, -0.1]), torch.ones(2))
    with pytest.raises(ValueError, match="1-D"):
        tfidf_scores(torch.ones(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="eps"):
        tfidf_scores(torch.ones(2), torch.ones(2), eps=0)


def test_select_features_best_first_with_stable_ties():
    scores = torch.tensor([0.5, 2.0, 0.5, 3.0, 0.5])
    assert select_features(scores, 4).tolist() == [3, 1, 0, 2]
    with pytest.raises(ValueError, match=r"tau must be an int in \[1, 5\]"):
        select_features(scores, 6)
    with pytest.raises(ValueError, match="tau"):
        select_features(scores, 0)
    with pytest.raises(ValueError, match="1-D"):
        select_features(scores[None], 1)


def test_eq7_direction_is_sum_of_decoder_columns():
    sae = _hand_sae()
    torch.testing.assert_close(sae_direction(sae, [2, 0]), torch.tensor([1.6, 0.8]))
    torch.testing.assert_close(sae_direction(sae, torch.tensor([3])), torch.tensor([-0.8, 0.6]))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        sae_direction(sae, [4])
    with pytest.raises(ValueError, match="distinct"):
        sae_direction(sae, [1, 1])
    with pytest.raises(ValueError, match="non-empty"):
        sae_direction(sae, [])


def test_mean_activations_is_eq6_mu():
    sae = _hand_sae()
    # Dense f of the three rows (see the eq. 4 test), averaged: ([0,2,3.5,0] + [0,0,0,1] + [0,0,.5,0]) / 3.
    expected = torch.tensor([0.0, 2.0, 4.0, 1.0]) / 3
    torch.testing.assert_close(mean_activations(sae, H, batch_size=2), expected)


def test_mean_activations_reads_a_store(tmp_path):
    with ActivationWriter(tmp_path, d=2) as w:
        w.add(H)
    torch.testing.assert_close(mean_activations(_hand_sae(), ActivationReader(tmp_path)),
                               torch.tensor([0.0, 2.0, 4.0, 1.0]) / 3, atol=1e-6, rtol=0)


# At most 2 kept + 2 AuxK of 32 latents get gradient (12.5%): sparse backward; 28 + 2 of 32: dense.
@pytest.mark.parametrize("kept", [2, 28])
def test_encoder_gradients_equal_plain_autograd(kept):
    g = torch.Generator().manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=4, expansion_factor=8, k=kept), g)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(4, generator=g))
        sae.encoder.bias.copy_(torch.randn(32, generator=g))
    h = torch.randn(16, 4, generator=g)
    dead = torch.tensor([True, False] * 16)
    out = sae(h, dead_mask=dead)
    (out.fvu + out.auxk_loss).backward()
    ours = {name: p.grad.clone() for name, p in sae.named_parameters()}

    params = {name: p.detach().clone().requires_grad_() for name, p in sae.named_parameters()}
    pre = F.linear(h - params["b_dec"], params["encoder.weight"], params["encoder.bias"])
    values, indices = pre.topk(kept, dim=1)
    h_hat = F.relu(values).unsqueeze(2).mul(params["W_dec"][indices]).sum(1) + params["b_dec"]
    variance = (h - h.mean(0)).pow(2).sum()
    dead_ids = dead.nonzero().squeeze(1)
    aux_values, aux = pre[:, dead_ids].topk(2, dim=1)  # k_aux = min(d_in // 2, 16 dead) = 2
    e_hat = F.relu(aux_values).unsqueeze(2).mul(params["W_dec"][dead_ids[aux]]).sum(1)
    loss = (h - h_hat).pow(2).sum() / variance + (e_hat - (h - h_hat).detach()).pow(2).sum() / variance
    loss.backward()
    for name, p in params.items():
        torch.testing.assert_close(ours[name], p.grad, msg=name)


def test_decoder_grad_projection_and_renormalization():
    sae = TopKSAE(SaeConfig(d_in=4, expansion_factor=2, k=2), torch.Generator().manual_seed(0))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(sae.encoder.weight, sae.W_dec)
    sae(torch.randn(6, 4)).fvu.backward()
    sae.remove_parallel_decoder_grad_()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(1), torch.zeros(8), atol=1e-6, rtol=0)
    with torch.no_grad():
        sae.W_dec.mul_(torch.arange(1.0, 9.0)[:, None])
    sae.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(8))


def test_init_from_sample_sets_median_and_least_squares_encoder_scale():
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(64, 4, generator=g) * 3 + 1
    sae = TopKSAE(SaeConfig(d_in=4, expansion_factor=2, k=2), g)
    before = sae.encoder.weight.clone()
    sae.init_from_sample_(sample)
    torch.testing.assert_close(sae.b_dec.detach(), geometric_median(sample))
    ratio = sae.encoder.weight / before
    torch.testing.assert_close(ratio, ratio[0, 0].expand_as(ratio))  # one common factor
    with torch.no_grad():
        x = sample - sae.b_dec
        y = sae(sample).h_hat - sae.b_dec
    # Least squares in the scale: the residual is orthogonal to the reconstruction.
    assert abs((x - y).mul(y).sum().item()) < 1e-3 * y.pow(2).sum().item()


def _planted(n, d, atoms=32, active=3, seed=0, always=()):
    """Rows = sparse non-negative mixtures of unit `atoms` (+ atoms in `always`, on in every row) + offset."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=torch.Generator().manual_seed(1234))
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    codes = torch.zeros(n, atoms)
    chosen = torch.rand(n, atoms, generator=g).argsort(dim=1)[:, :active]
    codes.scatter_(1, chosen, torch.rand(n, active, generator=g) + 0.5)
    for atom in always:
        codes[:, atom] = torch.rand(n, generator=g) + 1.0
    return codes @ dictionary + 0.3, dictionary


@pytest.fixture(scope="module")
def planted_sae():
    data, dictionary = _planted(8192, d=32)
    cfg = SaeConfig(d_in=32, expansion_factor=2, k=4, dead_tokens=2048)
    result = train_sae(data, cfg, epochs=6, batch_size=512, lr=1e-2, seed=0, progress=False)
    return result, dictionary


def test_training_recovers_planted_dictionary(planted_sae):
    result, dictionary = planted_sae
    best_cos = (dictionary @ result.sae.W_dec.detach().T).max(dim=1).values
    assert (best_cos >= 0.9).float().mean().item() >= 0.9
    history = result.history
    assert list(history.columns) == ["epoch", "step", "rows_seen", "fvu", "auxk_loss", "dead_fraction",
                                     "high_freq_fraction", "seconds"]
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6] and history["step"].iloc[-1] == 6 * 16
    assert history["fvu"].iloc[-1] < 0.2 < history["fvu"].iloc[0]
    torch.testing.assert_close(result.sae.W_dec.norm(dim=1), torch.ones(64))


def test_tfidf_ranks_planted_concept_features_first(planted_sae):
    result, dictionary = planted_sae
    concept_atoms = {3, 7}
    # Both sets draw sparse mixtures of every atom; concept rows also carry atoms 3 and 7 in every row.
    concept, _ = _planted(2048, d=32, seed=1, always=sorted(concept_atoms))
    counter, _ = _planted(2048, d=32, seed=2)
    scores = tfidf_scores(mean_activations(result.sae, concept), mean_activations(result.sae, counter))
    top = select_features(scores, 2)
    matched = (result.sae.W_dec.detach()[top] @ dictionary.T).argmax(dim=1)
    assert set(matched.tolist()) == concept_atoms
    direction = sae_direction(result.sae, top)
    assert torch.nn.functional.cosine_similarity(direction, dictionary[3] + dictionary[7], dim=0) > 0.9


def test_dead_and_high_frequency_fractions_match_their_definitions():
    # Four tight clusters: only a few latents can ever win the top-2, and they win on a quarter of rows or more.
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 4, generator=g) * 3
    data = centers.repeat(64, 1) + 0.01 * torch.randn(256, 4, generator=g)
    cfg = SaeConfig(d_in=4, expansion_factor=4, k=2, dead_tokens=10**9, auxk_alpha=0.0, high_freq_threshold=0.1)
    result = train_sae(data, cfg, epochs=1, batch_size=64, lr=1e-12, progress=False)
    latents, indices, _ = result.sae.encode(data)  # lr ~ 0: the SAE is the one the epoch ran with
    fires = torch.zeros(16).index_add_(0, indices.flatten(), (latents > 0).float().flatten())
    last = result.history.iloc[-1]
    assert last["dead_fraction"] == pytest.approx((fires == 0).float().mean().item())
    assert last["high_freq_fraction"] == pytest.approx((fires / 256 > 0.1).float().mean().item())
    assert last["dead_fraction"] >= 0.5 and last["high_freq_fraction"] > 0


def test_save_load_round_trip_is_bit_exact_in_sparsify_layout(tmp_path, planted_sae):
    sae = planted_sae[0].sae
    sae.save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["d_in"] == 32 and cfg["k"] == 4 and cfg["expansion_factor"] == 2 and cfg["activation"] == "topk"
    loaded = TopKSAE.load(tmp_path)
    assert loaded.cfg == sae.cfg
    for name, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    from safetensors import safe_open

    with safe_open(str(tmp_path / "sae.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == ["W_dec", "b_dec", "encoder.bias", "encoder.weight"]


def test_loads_a_folder_written_the_way_sparsify_writes_it(tmp_path):
    # sparsify's save_to_disk: its config fields plus d_in; num_latents 0 means d_in x expansion_factor.
    (tmp_path / "cfg.json").write_text(json.dumps({
        "activation": "topk", "expansion_factor": 2, "normalize_decoder": True, "num_latents": 0, "k": 2,
        "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": 2}))
    hand = _hand_sae()
    save_file({n: v.detach().contiguous() for n, v in hand.state_dict().items()}, str(tmp_path / "sae.safetensors"))
    torch.testing.assert_close(TopKSAE.load(tmp_path)(H).h_hat, hand(H).h_hat)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        TopKSAE.load(tmp_path)
    _hand_sae().save(tmp_path)
    cfg_path, weights = tmp_path / "cfg.json", tmp_path / "sae.safetensors"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "expansion_factor": 3, "num_latents": 6}))
    with pytest.raises(ValueError, match=r"W_dec has shape \(4, 2\); cfg.json implies \(6, 2\)"):
        TopKSAE.load(tmp_path)
    cfg_path.write_text(json.dumps({**cfg, "activation": "groupmax"}))
    with pytest.raises(ValueError, match="activation='groupmax'"):
        TopKSAE.load(tmp_path)
    cfg_path.write_text(json.dumps({**cfg, "num_latents": 5}))
    with pytest.raises(ValueError, match="num_latents=5"):
        TopKSAE.load(tmp_path)
    cfg_path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        TopKSAE.load(tmp_path)
    cfg_path.write_text(json.dumps(cfg))
    save_file({"encoder.weight": torch.zeros(4, 2), "W_dec": torch.zeros(4, 2), "b_dec": torch.zeros(2)}, str(weights))
    with pytest.raises(ValueError, match="expected"):
        TopKSAE.load(tmp_path)
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        TopKSAE.load(tmp_path)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="k=9 exceeds the number of latents 8"):
        SaeConfig(d_in=4, expansion_factor=2, k=9)
    with pytest.raises(ValueError, match="d_in"):
        SaeConfig(d_in=0)
    with pytest.raises(ValueError, match="auxk_alpha"):
        SaeConfig(d_in=4, k=2, auxk_alpha=-1)
    with pytest.raises(ValueError, match="high_freq_threshold"):
        SaeConfig(d_in=4, k=2, high_freq_threshold=1.5)
    with pytest.raises(TadaError, match="SaeConfig"):
        TopKSAE({"d_in": 4})
    sae = _hand_sae()
    with pytest.raises(ValueError, match=r"d_in=2\); got \(3, 5\)"):
        sae.encode(torch.zeros(3, 5))
    with pytest.raises(TadaError, match="floating-point"):
        sae.encode(torch.zeros(3, 2, dtype=torch.long))


def test_train_errors():
    cfg = SaeConfig(d_in=4, expansion_factor=2, k=2)
    with pytest.raises(ValueError, match="width d=5; the SAE expects d_in=4"):
        train_sae(torch.zeros(10, 5), cfg, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train_sae(torch.zeros(0, 4), cfg, progress=False)
    with pytest.raises(ValueError, match=r"batch_size must be in \[2, 10\]"):
        train_sae(torch.randn(10, 4), cfg, batch_size=11, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_sae(torch.randn(10, 4), cfg, batch_size=5, lr=-1.0, progress=False)
    with pytest.raises(TadaError, match="ActivationReader"):
        train_sae([[0.0] * 4], cfg, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_sae(torch.randn(10, 4), cfg, epochs=0, batch_size=5, progress=False)


def test_default_lr_scaling():
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(2**12) == pytest.approx(4e-4)


def test_training_resumes_to_the_same_result(tmp_path):
    data, _ = _planted(1024, d=8, atoms=8, active=2)
    cfg = SaeConfig(d_in=8, expansion_factor=2, k=2, dead_tokens=256)
    kwargs = dict(epochs=3, batch_size=128, lr=1e-2, seed=5, progress=False, checkpoint_every=3)
    straight = train_sae(data, cfg, **kwargs)
    interrupted = train_sae(data, cfg, out=tmp_path, max_steps=11, **kwargs)  # stops inside epoch 2
    assert interrupted.history["step"].tolist() == [8, 11]
    resumed = train_sae(data, cfg, out=tmp_path, **kwargs)
    for name, value in straight.sae.state_dict().items():
        torch.testing.assert_close(resumed.sae.state_dict()[name], value, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"), straight.history.drop(columns="seconds"))
    assert (tmp_path / "sae.safetensors").is_file() and (tmp_path / "history.csv").is_file()
    with pytest.raises(ValueError, match="another run"):
        train_sae(data, cfg, out=tmp_path, **{**kwargs, "seed": 6})


def test_training_reads_an_activation_store(tmp_path):
    data, _ = _planted(1024, d=8, atoms=8, active=2)
    with ActivationWriter(tmp_path / "acts", d=8, shard_rows=300) as w:
        for i, chunk in enumerate(data.split(100)):
            w.add(chunk, key=str(i))
    cfg = SaeConfig(d_in=8, expansion_factor=2, k=2)
    result = train_sae(ActivationReader(tmp_path / "acts"), cfg, epochs=2, batch_size=128, lr=1e-2, progress=False)
    assert result.history["step"].tolist() == [8, 16]
    assert result.history["fvu"].iloc[-1] < 0.5


def test_grid_search_table_and_choice(tmp_path):
    data, _ = _planted(512, d=8, atoms=8, active=2)
    table = grid_search(data, m_values=(1, 2), k_values=(2, 3), epochs=1, batch_size=128, lr=1e-2,
                        out=tmp_path, progress=False)
    assert list(table[["m", "k", "num_latents"]].itertuples(index=False, name=None)) == [
        (1, 2, 8), (1, 3, 8), (2, 2, 16), (2, 3, 16)]
    assert (table["step"] == 4).all()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "grid.csv"), table, check_dtype=False)
    assert (tmp_path / "m2_k3" / "sae.safetensors").is_file()
    with pytest.raises(ValueError, match="k=9 exceeds"):
        grid_search(data, m_values=(1,), k_values=(9,), progress=False)


def test_choose_sae_rule():
    table = pd.DataFrame({
        "m": [2, 4, 8, 16], "k": [16, 64, 32, 64], "num_latents": [8, 16, 32, 64],
        "fvu": [0.30, 0.10, 0.05, 0.10],
        "dead_fraction": [0.0, 0.02, 0.20, 0.00],
        "high_freq_fraction": [0.0, 0.00, 0.00, 0.02],
    })
    # scores 0.30, 0.12, 0.25, 0.12: rows 1 and 3 tie on score and fvu; fewer latents wins.
    assert choose_sae(table)["m"] == 4
    with pytest.raises(ValueError, match="lacks columns"):
        choose_sae(table.drop(columns="fvu"))
    with pytest.raises(ValueError, match="empty"):
        choose_sae(table.iloc[:0])
