"""VAETokenizer, the KL-16 (LDM -> diffusers) conversion, Harmon folders.

Real weights never reach this machine: every test builds a tiny random
diffusers AutoencoderKL with KL-16's block types and writes its state dict
in the LDM layout of LTH14/mar models/vae.py through the explicit inverse
mapping below, and tiny random tensors under Harmon's key names.
"""
import json
import os
import re
import runpy
import sys

import pytest
import torch
from diffusers import AutoencoderDC, AutoencoderKL
from safetensors.torch import load_file, save_file

from reca_toolkit.models import harmon_weights as hw
from reca_toolkit.models.encoders.vae import VAETokenizer, build_autoencoder_kl
from reca_toolkit.registry import ENCODERS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {**hw.KL16_CONFIG, 'block_out_channels': [8, 8, 16, 16, 32],
        'norm_num_groups': 4, 'latent_channels': 4, 'sample_size': 32}


# --- diffusers -> LDM (LTH14/mar models/vae.py names) ------------------------
ATTENTION = {'group_norm': 'norm', 'to_q': 'q', 'to_k': 'k', 'to_v': 'v',
             'to_out.0': 'proj_out'}
RESNET = r'(norm1|conv1|norm2|conv2|conv_shortcut)'


def ldm_key(key, levels):
    """The LDM name of a diffusers AutoencoderKL key."""
    if re.match(r'(encoder|decoder)\.conv_norm_out\.', key):
        return key.replace('conv_norm_out', 'norm_out')
    m = re.match(
        rf'encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.{RESNET}\.(.*)', key)
    if m:
        i, j, name, kind = m.groups()
        name = 'nin_shortcut' if name == 'conv_shortcut' else name
        return f'encoder.down.{i}.block.{j}.{name}.{kind}'
    m = re.match(
        r'encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)', key)
    if m:
        return f'encoder.down.{m[1]}.downsample.conv.{m[2]}'
    m = re.match(r'encoder\.down_blocks\.(\d+)\.attentions\.(\d+)\.'
                 r'(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)', key)
    if m:
        return f'encoder.down.{m[1]}.attn.{m[2]}.{ATTENTION[m[3]]}.{m[4]}'
    m = re.match(rf'decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.{RESNET}\.(.*)',
                 key)
    if m:
        i, j, name, kind = m.groups()
        name = 'nin_shortcut' if name == 'conv_shortcut' else name
        return f'decoder.up.{levels - 1 - int(i)}.block.{j}.{name}.{kind}'
    m = re.match(r'decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)', key)
    if m:
        return f'decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}'
    m = re.match(
        rf'(encoder|decoder)\.mid_block\.resnets\.(\d)\.{RESNET}\.(.*)', key)
    if m:
        return f'{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}.{m[4]}'
    m = re.match(r'(encoder|decoder)\.mid_block\.attentions\.0\.'
                 r'(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)', key)
    if m:
        return f'{m[1]}.mid.attn_1.{ATTENTION[m[2]]}.{m[3]}'
    assert re.match(r'(quant_conv|post_quant_conv|encoder\.conv_in|'
                    r'encoder\.conv_out|decoder\.conv_in|decoder\.conv_out)\.',
                    key), key
    return key


def to_ldm(state, levels=5):
    """A diffusers state dict in the LDM layout: attention projections
    become 1x1 convolutions, ``[C, C]`` -> ``[C, C, 1, 1]``."""
    out = {}
    for key, value in state.items():
        new = ldm_key(key, levels)
        if re.search(r'attn(_1|\.\d+)\.(q|k|v|proj_out)\.weight$', new):
            value = value[:, :, None, None]
        out[new] = value.clone() if value.device.type != 'meta' else value
    return out


@pytest.fixture(scope='module')
def vae():
    torch.manual_seed(0)
    return AutoencoderKL(**TINY).eval()


@pytest.fixture(scope='module')
def pixels():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1


# --- VAETokenizer ------------------------------------------------------------
def test_encode_scales_the_posterior_mode(vae, pixels):
    tok = VAETokenizer(vae)
    assert (tok.scaling_factor, tok.shift_factor) == (0.2325, 0.0)
    with torch.enable_grad():
        latents = tok.encode(pixels)
    assert not latents.requires_grad and latents.dtype == torch.float32
    assert latents.shape == (2, 4, 2, 2)
    mode = vae.encode(pixels).latent_dist.mode()
    assert torch.equal(latents, mode.detach() * 0.2325)
    shifted = VAETokenizer(vae, scaling_factor=2.0, shift_factor=0.1)
    assert torch.allclose(shifted.encode(pixels), (mode.detach() - 0.1) * 2)


def test_decode_undoes_the_scaling_and_clamps(vae, pixels):
    tok = VAETokenizer(vae, shift_factor=0.1)
    latents = tok.encode(pixels)
    out = tok.decode(latents)
    with torch.no_grad():
        ref = vae.decode(latents / 0.2325 + 0.1).sample
    assert torch.allclose(out, ref.clamp(-1, 1), atol=1e-6)
    assert out.dtype == torch.float32 and out.abs().max() <= 1


def test_encode_runs_in_the_vae_dtype_and_returns_float32(pixels):
    torch.manual_seed(0)
    half = AutoencoderKL(**TINY).to(torch.bfloat16).eval()
    tok = VAETokenizer(half)
    latents = tok.encode(pixels)
    assert latents.dtype == torch.float32
    with torch.no_grad():
        ref = half.encode(pixels.bfloat16()).latent_dist.mode()
    assert torch.equal(latents, ref.float() * 0.2325)
    assert tok.decode(latents).dtype == torch.float32


def test_posterior_sampling_needs_a_generator_not_the_global_rng(vae, pixels):
    tok = VAETokenizer(vae, sample_posterior=True)
    with pytest.raises(ValueError, match='generator='):
        tok.encode(pixels)
    state = torch.get_rng_state()
    a = tok.encode(pixels, generator=torch.Generator().manual_seed(3))
    b = tok.encode(pixels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, VAETokenizer(vae).encode(pixels))


@pytest.mark.parametrize('layout', ['cpq', 'pqc'])
def test_tokens_are_raster_order_patches(vae, layout):
    tok = VAETokenizer(vae, patch_size=2, patch_layout=layout)
    latents = torch.randn(2, 4, 4, 6)
    tokens = tok.to_tokens(latents)
    assert tokens.shape == (2, 6, 16) and tok.token_dim == 16
    for i in range(2):
        for j in range(3):
            patch = latents[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            if layout == 'pqc':
                patch = patch.permute(0, 2, 3, 1)
            assert torch.equal(tokens[:, i * 3 + j], patch.reshape(2, -1))
    assert torch.equal(tok.from_tokens(tokens, (2, 3)), latents)
    flat = VAETokenizer(vae).to_tokens(latents)
    assert torch.equal(flat, latents.flatten(2).transpose(1, 2))


def test_grid_and_sizes(vae):
    tok = VAETokenizer(vae)
    assert (tok.downsample, tok.latent_channels, tok.token_dim) == (16, 4, 4)
    assert tok.grid(64) == (4, 4) and tok.grid((64, 32)) == (4, 2)
    assert VAETokenizer(vae, patch_size=2).grid(64) == (2, 2)
    with pytest.raises(ValueError, match='multiple of 16'):
        tok.grid(40)
    with pytest.raises(ValueError, match='do not fill'):
        tok.from_tokens(torch.zeros(1, 5, 4), (2, 2))
    with pytest.raises(ValueError, match='patch_layout'):
        VAETokenizer(vae, patch_layout='hwc')


def test_registered_and_works_with_a_dc_autoencoder(vae, pixels):
    built = ENCODERS.build(dict(type='VAETokenizer', vae=vae, patch_size=2))
    assert isinstance(built, VAETokenizer) and built.patch_size == 2
    torch.manual_seed(0)
    dc = AutoencoderDC(
        latent_channels=4, attention_head_dim=4,
        encoder_block_out_channels=(8, 16), decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), ()), decoder_qkv_multiscales=((), ()),
        scaling_factor=0.5).eval()
    tok = VAETokenizer(dc)
    assert tok.downsample == 2 and tok.scaling_factor == 0.5
    latents = tok.encode(pixels)
    assert torch.equal(latents, dc.encode(pixels).latent.detach() * 0.5)
    assert tok.decode(latents).shape == pixels.shape


def test_build_autoencoder_kl_from_local_files(vae, tmp_path):
    assert isinstance(build_autoencoder_kl(TINY), AutoencoderKL)
    vae.save_pretrained(tmp_path / 'folder')
    from_folder = build_autoencoder_kl(None, tmp_path / 'folder')
    save_file(vae.state_dict(), tmp_path / 'vae.safetensors')
    from_file = build_autoencoder_kl(TINY, tmp_path / 'vae.safetensors')
    for built in (from_folder, from_file):
        for key, value in vae.state_dict().items():
            assert torch.equal(built.state_dict()[key], value), key
    with pytest.raises(ValueError, match='needs config='):
        build_autoencoder_kl(None, tmp_path / 'vae.safetensors')
    with pytest.raises(ValueError, match='leave config=None'):
        build_autoencoder_kl(TINY, tmp_path / 'folder')
    torch.save({}, tmp_path / 'kl16.ckpt')
    with pytest.raises(ValueError, match='safetensors only'):
        build_autoencoder_kl(TINY, tmp_path / 'kl16.ckpt')
    with pytest.raises(FileNotFoundError, match='absent'):
        build_autoencoder_kl(TINY, tmp_path / 'absent.safetensors')


# --- KL-16 conversion --------------------------------------------------------
def test_kl16_config_is_mar_kl16_at_full_size():
    # LTH14/mar models/vae.py AutoencoderKL(embed_dim=16,
    # ch_mult=(1, 1, 2, 2, 4)): 312 tensors, 66,456,019 parameters.
    shapes = hw.vae_shapes()
    assert len(shapes) == 312
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 66_456_019
    meta = {k: torch.empty(s, device='meta') for k, s in shapes.items()}
    ldm = to_ldm(meta)
    assert ldm['encoder.down.4.attn.1.q.weight'].shape == (512, 512, 1, 1)
    assert ldm['quant_conv.weight'].shape == (32, 32, 1, 1)
    assert not any('.up.' in k and '.attn.' in k for k in ldm)
    converted = hw.convert_kl16_state_dict({'model': ldm})
    assert {k: tuple(v.shape) for k, v in converted.items()} == shapes


def test_converted_kl16_is_bit_equal(vae, pixels):
    ldm = to_ldm(vae.state_dict())
    assert sum('encoder.down.4.attn.' in k for k in ldm) == 20
    ldm['loss.discriminator.main.0.weight'] = torch.zeros(3)  # dropped
    converted = AutoencoderKL(**TINY).eval()
    converted.load_state_dict(hw.convert_kl16_state_dict({'model': ldm}, TINY),
                              strict=True)
    with torch.no_grad():
        assert torch.equal(converted.encode(pixels).latent_dist.mean,
                           vae.encode(pixels).latent_dist.mean)
        z = torch.randn(1, 4, 2, 2)
        assert torch.equal(converted.decode(z).sample, vae.decode(z).sample)


def test_kl16_conversion_names_bad_keys(vae):
    ldm = to_ldm(vae.state_dict())
    extra = {**ldm, 'encoder.down.0.block.0.extra.weight': torch.zeros(1)}
    with pytest.raises(ValueError, match=r'encoder\.down\.0\.block\.0\.extra'):
        hw.convert_kl16_state_dict(extra, TINY)
    stray = {**ldm, 'ema.decay': torch.zeros(1)}
    with pytest.raises(ValueError,
                       match=r'no diffusers counterpart: ema\.decay'):
        hw.convert_kl16_state_dict(stray, TINY)
    short = {k: v for k, v in ldm.items() if k != 'decoder.conv_out.bias'}
    with pytest.raises(ValueError, match=r'lacks: decoder\.conv_out\.bias'):
        hw.convert_kl16_state_dict(short, TINY)
    wrong = {**ldm, 'encoder.conv_in.bias': torch.zeros(9)}
    with pytest.raises(ValueError, match=r'encoder\.conv_in\.bias has shape'):
        hw.convert_kl16_state_dict(wrong, TINY)
    with pytest.raises(ValueError, match=r'needs \(512,\)'):
        hw.convert_kl16_state_dict(ldm)  # tiny weights, full-size config


class _Payload:
    """Unpickling this creates a file: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), 'w')


def test_pickles_that_run_code_are_refused(tmp_path):
    marker = tmp_path / 'pwned'
    torch.save({'w': torch.zeros(2), 'x': _Payload(marker)},
               tmp_path / 'evil.pth')
    import pickle
    with pytest.raises(pickle.UnpicklingError,
                       match=r"evil\.pth.*never unpickles code"):
        hw.load_pickled_state_dict(tmp_path / 'evil.pth')
    assert not marker.exists()
    torch.save({'model': {'w': torch.ones(2)}}, tmp_path / 'ok.ckpt')
    state = hw.load_pickled_state_dict(tmp_path / 'ok.ckpt')
    assert torch.equal(state['model']['w'], torch.ones(2))
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        hw.load_pickled_state_dict(tmp_path / 'absent.pth')


# --- Harmon folders ----------------------------------------------------------
LLM_CONFIG = dict(model_type='qwen2', architectures=['Qwen2ForCausalLM'],
                  hidden_size=8, num_hidden_layers=1, vocab_size=16,
                  tie_word_embeddings=True)


def harmon_state():
    g = torch.Generator().manual_seed(5)
    embed = torch.randn(16, 8, generator=g).bfloat16()
    return {
        'llm.model.embed_tokens.weight': embed,
        'llm.lm_head.weight': embed,  # tied, as torch.save keeps it
        'llm.model.layers.0.self_attn.q_proj.weight':
            torch.randn(8, 8, generator=g).bfloat16(),
        'llm.model.norm.weight': torch.ones(8, dtype=torch.bfloat16),
        'mar.fake_latent': torch.randn(1, 6, generator=g),
        'mar.encoder_blocks.0.attn.qkv.weight':
            torch.randn(18, 6, generator=g),
        'proj_in.0.weight': torch.randn(8, 6, generator=g),
        'proj_out.2.bias': torch.randn(6, generator=g),
    }


def write_tokenizer(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'tokenizer.json').write_text('{"model": {}}')
    (folder / 'tokenizer_config.json').write_text('{}')


def harmon_folder(path, vae, variant='1.5b'):
    """A folder as downloaded: Qwen files and Harmon's pickles."""
    write_tokenizer(path)
    (path / 'config.json').write_text(json.dumps(LLM_CONFIG))
    torch.save({'model': to_ldm(vae.state_dict())}, path / 'kl16.ckpt')
    torch.save(harmon_state(), path / f'harmon_{variant}.pth')
    return path


def assert_states_equal(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def test_missing_files_are_each_named_with_their_source(tmp_path, vae):
    with pytest.raises(FileNotFoundError) as error:
        hw.check_harmon_folder(tmp_path / 'none', '1.5b')
    message = str(error.value)
    assert 'does not exist' in message and 'never downloads' in message
    for name in ('config.json', 'tokenizer.json', 'tokenizer_config.json',
                 'kl16.ckpt', 'harmon_1.5b.pth'):
        assert f'  - {name}' in message, name
    assert ('huggingface-cli download Qwen/Qwen2.5-1.5B-Instruct config.json'
            in message)
    assert 'huggingface-cli download wusize/harmon harmon_1.5b.pth' in message

    folder = harmon_folder(tmp_path / 'h', vae)
    (folder / 'kl16.ckpt').unlink()
    (folder / 'tokenizer_config.json').unlink()
    with pytest.raises(FileNotFoundError) as error:
        hw.check_harmon_folder(folder, '1.5b')
    lines = [l for l in str(error.value).splitlines() if l.startswith('  - ')]
    assert len(lines) == 2 and 'is incomplete' in str(error.value)
    assert lines[0].startswith('  - tokenizer_config.json: huggingface-cli '
                               'download Qwen/Qwen2.5-1.5B-Instruct')
    assert lines[1].startswith('  - kl16.ckpt (or its converted '
                               'kl16.safetensors): huggingface-cli download '
                               'wusize/harmon kl16.ckpt')
    with pytest.raises(FileNotFoundError, match='harmon_0.5b.pth'):
        hw.check_harmon_folder(folder, '0.5b')
    with pytest.raises(ValueError, match="'2b' is not one of"):
        hw.check_harmon_folder(folder, '2b')


def test_llm_config_must_be_qwen2(tmp_path, vae):
    folder = harmon_folder(tmp_path, vae)
    (folder / 'config.json').write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="model_type='llama'"):
        hw.check_harmon_folder(folder, '1.5b')


def test_load_from_pickles_convert_once_then_prefer_safetensors(tmp_path, vae):
    folder = harmon_folder(tmp_path, vae)
    files = hw.check_harmon_folder(folder, '1.5b')
    assert files['vae'].name == 'kl16.ckpt'
    harmon, vae_state = hw.load_harmon_weights(folder, '1.5b', vae_config=TINY)
    assert_states_equal(harmon, harmon_state())
    assert_states_equal(vae_state, vae.state_dict())

    written = hw.convert_harmon_folder(folder, '1.5b', vae_config=TINY)
    assert [p.name for p in written] == ['kl16.safetensors',
                                         'harmon_1.5b.safetensors']
    assert_states_equal(load_file(folder / 'kl16.safetensors'),
                        vae.state_dict())
    assert not [p for p in folder.iterdir() if p.name.startswith('.')]
    stamps = {p: p.stat().st_mtime_ns for p in written}
    assert hw.convert_harmon_folder(folder, '1.5b', vae_config=TINY) == []
    assert {p: p.stat().st_mtime_ns for p in written} == stamps

    # Safetensors are preferred: the pickles are no longer opened at all.
    files = hw.check_harmon_folder(folder, '1.5b')
    assert files['vae'].name == 'kl16.safetensors'
    assert files['harmon'].name == 'harmon_1.5b.safetensors'
    marker = tmp_path / 'pwned'
    for name in ('kl16.ckpt', 'harmon_1.5b.pth'):
        torch.save({'x': _Payload(marker)}, folder / name)
    harmon, vae_state = hw.load_harmon_weights(folder, '1.5b', vae_config=TINY)
    assert_states_equal(harmon, harmon_state())
    assert_states_equal(vae_state, vae.state_dict())
    assert not marker.exists()


def test_wrong_weights_are_named(tmp_path, vae):
    folder = harmon_folder(tmp_path, vae)
    torch.save({'mar.x': torch.zeros(1), 'visual.y': torch.zeros(1)},
               folder / 'harmon_1.5b.pth')
    with pytest.raises(ValueError, match=r"harmon_1\.5b\.pth' is not a Harmon "
                       r'checkpoint: unexpected keys visual\.y; no llm\.\*'):
        hw.load_harmon_weights(folder, '1.5b', vae_config=TINY)
    torch.save(harmon_state(), folder / 'harmon_1.5b.pth')
    save_file({'quant_conv.bias': torch.zeros(8)}, folder / 'kl16.safetensors')
    with pytest.raises(ValueError, match=r'kl16\.safetensors.*missing'):
        hw.load_harmon_weights(folder, '1.5b', vae_config=TINY)


def test_export_round_trip(tmp_path, vae):
    write_tokenizer(tmp_path / 'qwen')
    (tmp_path / 'qwen' / 'merges.txt').write_text('#version: 0.2\n')
    from transformers import Qwen2Config
    llm_config = Qwen2Config(hidden_size=8, intermediate_size=16,
                             num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=1, vocab_size=16)
    out = hw.write_harmon_folder(
        tmp_path / 'export', harmon_state(), vae.state_dict(), llm_config,
        tmp_path / 'qwen', variant='0.5b', vae_config=TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export', 'qwen']
    assert sorted(p.name for p in out.iterdir()) == [
        'config.json', 'harmon_0.5b.pth', 'harmon_0.5b.safetensors',
        'kl16.safetensors', 'merges.txt', 'tokenizer.json',
        'tokenizer_config.json']
    assert Qwen2Config.from_pretrained(out).hidden_size == 8
    harmon, vae_state = hw.load_harmon_weights(out, '0.5b', vae_config=TINY)
    assert_states_equal(harmon, harmon_state())
    assert_states_equal(vae_state, vae.state_dict())
    # The .pth is what Harmon's own scripts load: a plain tensor dict.
    pickled = torch.load(out / 'harmon_0.5b.pth', weights_only=True)
    assert_states_equal(pickled, harmon_state())
    assert (out / 'harmon_0.5b.pth').stat().st_mode & 0o777 == \
        (out / 'config.json').stat().st_mode & 0o777


def test_export_is_complete_or_absent(tmp_path, vae, monkeypatch):
    write_tokenizer(tmp_path / 'qwen')
    args = (harmon_state(), vae.state_dict(), LLM_CONFIG, tmp_path / 'qwen')
    (tmp_path / 'busy').mkdir()
    (tmp_path / 'busy' / 'file').write_text('x')
    with pytest.raises(FileExistsError, match='busy'):
        hw.write_harmon_folder(tmp_path / 'busy', *args, variant='1.5b',
                               vae_config=TINY)
    (tmp_path / 'qwen' / 'tokenizer_config.json').unlink()
    with pytest.raises(FileNotFoundError, match='tokenizer_config.json'):
        hw.write_harmon_folder(tmp_path / 'out', *args, variant='1.5b',
                               vae_config=TINY)
    write_tokenizer(tmp_path / 'qwen')

    def disk_full(*_, **__):
        raise OSError('No space left on device')

    monkeypatch.setattr(torch, 'save', disk_full)
    with pytest.raises(OSError, match='No space'):
        hw.write_harmon_folder(tmp_path / 'out', *args, variant='1.5b',
                               vae_config=TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['busy', 'qwen']


def test_cli_converts_the_folder(tmp_path, vae, monkeypatch, capsys):
    folder = harmon_folder(tmp_path, vae, variant='0.5b')
    save_file(vae.state_dict(), folder / 'kl16.safetensors')
    script = os.path.join(REPO, 'tools', 'model_converters',
                          'harmon_to_safetensors.py')
    monkeypatch.setattr(sys, 'argv',
                        [script, str(folder), '--variant', '0.5b'])
    runpy.run_path(script, run_name='__main__')
    assert capsys.readouterr().out.strip() == \
        f'wrote {folder / "harmon_0.5b.safetensors"}'
    assert_states_equal(load_file(folder / 'harmon_0.5b.safetensors'),
                        harmon_state())
    runpy.run_path(script, run_name='__main__')
    assert 'already converted' in capsys.readouterr().out
