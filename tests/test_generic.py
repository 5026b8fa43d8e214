"""The generic adapter finds the same sites, in the same order, as the dedicated ones."""

import pytest
import torch

import tada
from tada.engine import PatchContext
from tada.errors import TadaError
from tada.models.generic import GenericModel
from tada.models.tiny import build_tiny_audioldm2, build_tiny_stable_audio


def test_probe_finds_stable_audio_sites():
    pipe = build_tiny_stable_audio(0)
    generic = GenericModel(pipe, default_duration=1.0, duration_kwarg="audio_end_in_s")
    assert [s.name for s in generic.sites] == [s.name for s in tada.wrap(pipe).sites]


def test_probe_finds_audioldm2_sites_in_execution_order():
    pipe = build_tiny_audioldm2(0)
    generic = GenericModel(pipe, default_duration=1.0, duration_kwarg="audio_length_in_s")
    dedicated = tada.wrap(pipe)
    assert [s.name for s in generic.sites] == [s.name for s in dedicated.sites]
    assert any(n.startswith("mid_block") for n in (s.name for s in generic.sites))
    plain = generic.generate(["fast piano", "slow jazz"], [0, 1], steps=2).waveform
    assert torch.equal(plain, dedicated.generate(["fast piano", "slow jazz"], [0, 1], steps=2, duration=1.0).waveform)
    other = generic.encode(["sad jazz", "slow jazz"])
    patched = generic.generate(["fast piano", "slow jazz"], [0, 1], steps=2,
                               interventions=[PatchContext(other, sites=[[3], []])]).waveform
    assert torch.equal(patched[1], plain[1]) and not torch.equal(patched[0], plain[0])


def test_a_pipeline_without_a_denoiser_is_refused():
    class NotAPipeline:
        pass

    with pytest.raises(TadaError, match="no denoiser"):
        tada.wrap(NotAPipeline())
