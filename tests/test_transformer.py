"""SoraTransformer3DModel on a tiny random config."""

import pytest
import torch

from sora_hf.models.transformer_sora import PRESETS, SoraTransformer3DModel, pack_rows

C = 4


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = SoraTransformer3DModel(in_channels=C, **{**PRESETS["tiny-test"], **overrides}).eval()
    with torch.no_grad():  # zero-initialised branches would hide bugs: make every weight matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def text(batch=1, length=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, 384, generator=g)


@pytest.mark.parametrize("frames,height,width", [(1, 4, 4), (3, 4, 6), (5, 8, 2)])
def test_output_has_the_latent_shape(frames, height, width):
    model = tiny_model()
    x = torch.randn(2, C, frames, height, width)
    out = model(x, torch.tensor([10.0, 900.0]), text(2)).sample
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("preset,millions", [("sora-tiny", 9.3), ("S", 40.2), ("B", 160), ("L", 561)])
def test_presets_have_their_stated_size_and_run(preset, millions):
    """Built on the meta device (no memory, no compute), so the GPU presets are checked here too."""
    with torch.device("meta"):
        model = SoraTransformer3DModel(in_channels=16, **PRESETS[preset])
        x = torch.randn(2, 16, 5, 8, 14)  # 17x64x112 with the shipped VAE: 2 x 140 tokens
        out = model(x, torch.full((2, 5), 500.0), torch.randn(2, 24, 384), None, torch.randn(2, 384)).sample
    assert out.shape == x.shape
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, rel=0.005)


def test_adaln_zero_starts_at_zero_velocity():
    torch.manual_seed(0)
    model = SoraTransformer3DModel(in_channels=C, **PRESETS["tiny-test"])
    assert model(torch.randn(1, C, 3, 4, 4), torch.tensor([500.0]), text()).sample.abs().max() == 0


def test_packed_equals_one_at_a_time():
    model = tiny_model()
    latents = [torch.randn(C, 3, 4, 6), torch.randn(C, 1, 4, 4), torch.randn(C, 5, 2, 8), torch.randn(C, 2, 6, 2)]
    timesteps = [torch.rand(3) * 1000, torch.rand(1) * 1000, torch.rand(5) * 1000, torch.tensor(250.0)]
    texts = [text(1, n, seed=n)[0] for n in (5, 3, 9, 4)]
    pooled = [torch.randn(384), torch.randn(384), torch.randn(2, 384), torch.randn(384)]
    frame_seg = [torch.zeros(3), torch.zeros(1), torch.tensor([0, 0, 1, 1, 1]), torch.zeros(2)]
    text_seg = [torch.zeros(5), torch.zeros(3), torch.tensor([0] * 4 + [1] * 5), torch.zeros(4)]
    with torch.no_grad():
        packed = model.forward_packed(latents, timesteps, texts, pooled, frame_seg, text_seg, max_tokens_per_row=40)
        for i in range(4):
            p = pooled[i].reshape(1, -1, 384)
            alone = model(latents[i][None], torch.as_tensor(timesteps[i]).reshape(1, -1).expand(1, latents[i].shape[1]),
                          texts[i][None], None, p, frame_seg[i][None], text_seg[i][None]).sample[0]
            torch.testing.assert_close(packed[i], alone, atol=1e-5, rtol=1e-4)


def test_packed_samples_of_one_length_attend_only_to_their_own_tokens_and_text():
    """Equal-length samples share one attention batch (in one row and across rows) while their texts differ
    in length and segments: each must still equal its run alone, and its gradient must not leak."""
    model = tiny_model()
    n = 5
    latents = [torch.randn(C, 3, 4, 4, requires_grad=True) for _ in range(n)]  # 12 tokens each: 3 per row of 40
    timesteps = [torch.rand(3) * 1000 for _ in range(n)]
    lengths = [2, 7, 4, 9, 3]
    texts = [text(1, m, seed=m)[0] for m in lengths]
    storyboard = [i % 2 == 1 for i in range(n)]
    pooled = [torch.randn(2 if s else 1, 384) for s in storyboard]
    frame_seg = [torch.tensor([0, 1, 1]) if s else torch.zeros(3) for s in storyboard]
    text_seg = [torch.tensor([0] * (m // 2) + [1] * (m - m // 2)) if s else torch.zeros(m)
                for m, s in zip(lengths, storyboard)]
    packed = model.forward_packed(latents, timesteps, texts, pooled, frame_seg, text_seg, max_tokens_per_row=40)
    packed[2].sum().backward()
    assert all(latents[i].grad is None or latents[i].grad.abs().max() == 0 for i in range(n) if i != 2)
    assert latents[2].grad.abs().max() > 0
    with torch.no_grad():
        for i in range(n):
            alone = model(latents[i][None], timesteps[i][None], texts[i][None], None, pooled[i][None],
                          frame_seg[i][None], text_seg[i][None]).sample[0]
            torch.testing.assert_close(packed[i].detach(), alone, atol=1e-5, rtol=1e-4)


def test_pack_rows_first_fit_decreasing():
    rows = pack_rows([30, 10, 25, 5, 50], max_tokens=40)
    assert sorted(i for row in rows for i in row) == [0, 1, 2, 3, 4]
    assert all(sum([30, 10, 25, 5, 50][i] for i in row) <= 40 or len(row) == 1 for row in rows)
    assert rows == [[4], [0, 1], [2, 3]]  # decreasing: 50 alone, then 30+10, then 25+5


def test_per_frame_timesteps_and_segments_matter():
    model = tiny_model()
    x = torch.randn(1, C, 3, 4, 4)
    t_same = torch.tensor([[500.0, 500.0, 500.0]])
    t_first_clean = torch.tensor([[0.0, 500.0, 500.0]])
    out_a, out_b = model(x, t_same, text()).sample, model(x, t_first_clean, text()).sample
    assert not torch.allclose(out_a, out_b)
    # storyboard: frames of segment 1 must not see segment 0's text
    tokens = text(1, 8)
    text_seg = torch.tensor([[0] * 4 + [1] * 4])
    frame_seg = torch.tensor([[0, 1, 1]])
    base = model(x, t_same, tokens, frame_segment_ids=frame_seg, text_segment_ids=text_seg).sample
    edited = tokens.clone()
    edited[:, :4] += 1.0  # change segment 0's words only
    out = model(x, t_same, edited, frame_segment_ids=frame_seg, text_segment_ids=text_seg).sample
    assert not torch.allclose(out, base)  # ... which changes the output through self-attention,
    model_no_self = tiny_model()
    for block in model_no_self.blocks:  # but with self-attention silenced, frames 1-2 cannot tell
        block.attn1.to_out[0].weight.data.zero_()
        block.attn1.to_out[0].bias.data.zero_()
    a = model_no_self(x, t_same, tokens, frame_segment_ids=frame_seg, text_segment_ids=text_seg).sample
    b = model_no_self(x, t_same, edited, frame_segment_ids=frame_seg, text_segment_ids=text_seg).sample
    torch.testing.assert_close(a[:, :, 1:], b[:, :, 1:])
    assert not torch.allclose(a[:, :, :1], b[:, :, :1])


def test_padding_tokens_are_ignored():
    model = tiny_model()
    x, t = torch.randn(1, C, 3, 4, 4), torch.tensor([300.0])
    tokens = text(1, 5)
    padded = torch.cat([tokens, torch.randn(1, 3, 384)], 1)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    pooled = tokens.mean(1)
    torch.testing.assert_close(model(x, t, tokens, pooled_projections=pooled).sample,
                               model(x, t, padded, mask, pooled_projections=pooled).sample, atol=1e-5, rtol=1e-4)


def test_fused_qkv_projections_give_the_same_output():
    model = tiny_model()
    x, t = torch.randn(2, C, 3, 4, 4), torch.tensor([100.0, 800.0])
    tokens = text(2, 7)
    with torch.no_grad():
        out = model(x, t, tokens).sample
        model.fuse_qkv_projections()  # diffusers' AttentionMixin: to_qkv (self), to_kv (cross)
        assert model.blocks[0].attn1.fused_projections and hasattr(model.blocks[0].attn2, "to_kv")
        model.blocks[0].attn1.to_q.weight.zero_()  # the unfused weights are no longer read ...
        torch.testing.assert_close(model(x, t, tokens).sample, out, atol=1e-5, rtol=1e-4)
        model.unfuse_qkv_projections()  # ... until unfused again
        assert not torch.allclose(model(x, t, tokens).sample, out)


def test_compiles_as_one_graph_without_recompiling():
    """torch.compile(fullgraph=True), as diffusers tests its models: no branch on tensor values in the dense
    forward the pipeline calls (padded text, per-frame timesteps, pooled text given), and no recompilation when
    the timesteps, the text or its padding change from call to call."""
    model = tiny_model()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, C, 3, 4, 4)
    tokens = text(2, 7)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0  # the second prompt is shorter: padding masked out of cross-attention
    calls = [(torch.tensor([[100.0, 100.0, 0.0], [800.0, 800.0, 800.0]]), tokens, mask),
             (torch.tensor([[500.0] * 3, [20.0] * 3]), text(2, 7, seed=2), torch.ones(2, 7, dtype=torch.long))]
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for t, states, m in calls:
            pooled = states.mean(1)
            eager = model(x, t, states, m, pooled).sample
            torch.testing.assert_close(compiled(x, t, states, m, pooled).sample, eager, atol=1e-5, rtol=1e-4)


def test_quantize_int8_runs_the_blocks_in_int8_close_to_float32_and_is_one_way(tmp_path):
    from peft import LoraConfig

    model = tiny_model()
    x, t, tokens = torch.randn(2, C, 3, 4, 4), torch.tensor([100.0, 800.0]), text(2, 7)
    with torch.no_grad():
        out = model(x, t, tokens).sample
        assert model.quantize_int8() is model and model.is_int8
        assert isinstance(model.blocks[0].ff[0], torch.ao.nn.quantized.dynamic.Linear)
        assert isinstance(model.proj_out, torch.nn.Linear)  # the output projection stays float32
        int8 = model(x, t, tokens).sample
    error = ((int8 - out).norm() / out.norm()).item()
    assert 0 < error < 0.05, error  # rounded, not broken
    torch.testing.assert_close(model.quantize_int8()(x, t, tokens).sample, int8, atol=0, rtol=0)  # idempotent
    with pytest.raises(ValueError, match="quantize_int8"):
        model.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="float32 model on the CPU"):
        tiny_model().to(torch.bfloat16).quantize_int8()
    adapted = tiny_model()
    adapted.add_adapter(LoraConfig(r=2, target_modules=["to_q"]))
    with pytest.raises(ValueError, match="LoRA adapters"):
        adapted.quantize_int8()


def test_deterministic_and_save_load_identical(tmp_path):
    model = tiny_model()
    x, t = torch.randn(1, C, 3, 4, 4), torch.tensor([700.0])
    out = model(x, t, text()).sample
    torch.testing.assert_close(out, model(x, t, text()).sample, atol=0, rtol=0)
    model.save_pretrained(tmp_path)
    loaded = SoraTransformer3DModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(x, t, text()).sample, out, atol=0, rtol=0)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny_model().train()
    x, t = torch.randn(2, C, 3, 4, 4), torch.tensor([100.0, 800.0])
    model(x, t, text(2)).sample.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.enable_gradient_checkpointing()
    model(x, t, text(2)).sample.square().mean().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape,needle", [((1, C + 1, 3, 4, 4), "C=4"), ((1, C, 3, 5, 4), "multiples of the patch")])
def test_bad_latent_shapes(shape, needle):
    with pytest.raises(ValueError, match=needle):
        tiny_model()(torch.randn(*shape), torch.tensor([1.0]), text())


def test_bad_timestep_shape():
    with pytest.raises(ValueError, match="timestep shape"):
        tiny_model()(torch.randn(2, C, 3, 4, 4), torch.ones(2, 4), text(2))


def test_with_patch_size_starts_from_the_coarser_model():
    coarse = tiny_model(patch_size=2)
    fine = coarse.with_patch_size(1)
    assert fine.config.patch_size == 1 and coarse.config.patch_size == 2
    coarse_state, fine_state = coarse.state_dict(), fine.state_dict()
    for name, value in fine_state.items():  # everything size-free is copied exactly
        if not name.startswith(("patch_embed.", "proj_out.")):
            assert torch.equal(value, coarse_state[name]), name
    # the fine embedding of a latent pixel = the coarse embedding of that pixel upsampled to a 2x2 patch
    pixel = torch.randn(1, C, 1, 1, 1)
    upsampled = pixel.expand(1, C, 1, 2, 2)
    torch.testing.assert_close(fine.patch_embed(fine.patchify(pixel)), coarse.patch_embed(coarse.patchify(upsampled)))
    # the fine output of a hidden state = the mean of the coarse outputs over the 2x2 pixels it covers
    hidden = torch.randn(1, 1, fine.config.hidden_size)
    torch.testing.assert_close(fine.unpatchify(fine.proj_out(hidden), 1, 1, 1),
                               coarse.unpatchify(coarse.proj_out(hidden), 1, 2, 2).mean(dim=(3, 4), keepdim=True))
    x = torch.randn(1, C, 3, 4, 6)
    assert fine(x, torch.tensor([300.0]), text()).sample.shape == x.shape
    with pytest.raises(ValueError, match=r"patch_size=3 must divide the current patch_size=2"):
        coarse.with_patch_size(3)


def test_with_patch_size_of_a_default_built_model():
    """patch_size left at its default when built must still change (diffusers' from_config skips such keys)."""
    assert tiny_model().with_patch_size(1).config.patch_size == 1
