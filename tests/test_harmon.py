"""What is Harmon's own: its templates, its 0.1 understanding gradient, its
weights folder. What every family does is in test_umm_conformance.py."""
import shutil

import pytest
import torch

from conftest import random_images, to_float
from test_umm_conformance import FAMILIES, build
from test_umm_conformance import reload as reload_export

HARMON = next(f for f in FAMILIES if f.name == 'harmon')


@pytest.fixture(scope='module')
def umm():
    return build(HARMON).umm


def ids(umm, text):
    return umm.tokenizer(text, add_special_tokens=False)['input_ids']


def embed(umm, token_ids):
    return umm.llm.get_input_embeddings()(torch.tensor(token_ids))


def pixels(size=2, seed=0):
    return to_float(random_images(size, HARMON.image_size, seed=seed))


def test_understanding_tokens_follow_the_latent_grid(umm):
    # 32 px through a 4x VAE: an 8 x 8 grid, then the 4 buffer tokens.
    embeds = umm.encode_understanding(pixels())
    assert embeds.shape[1] == 8 * 8 + 4 == umm.mar.buffer_size + 64


def test_buffer_tokens_go_last_in_the_prompt(umm):
    """The MAR encoder puts its buffer first; the LLM sees it after the
    image tokens, and the decoder gets it back first."""
    with torch.no_grad():
        latents = umm.gen_tokenizer.encode(pixels())
        tokens = umm.gen_tokenizer.to_tokens(latents)
        states = umm.mar.encode(tokens, tokens.new_zeros(tokens.shape[:2]),
                                (8, 8))
        embeds = umm.encode_understanding(pixels())
        projected = umm.proj_in(states)
    torch.testing.assert_close(embeds[:, :64], projected[:, 4:])
    torch.testing.assert_close(embeds[:, 64:], projected[:, :4])
    assert torch.equal(umm._buffer_first(umm._buffer_last(states)), states)


@pytest.mark.parametrize('instruction, text', [
    (None, 'Generate an image.'),  # the generic share: no leading newline
    ('Describe the image.', '\nDescribe the image.'),
])
def test_image_condition_layout(umm, instruction, text):
    with torch.no_grad():
        image = umm.encode_understanding(pixels(1))
        condition = umm.image_condition(image, [instruction])
    head = ids(umm, '<|im_start|>user\n')
    tail = ids(umm, text + '<|im_end|>\n<|im_start|>assistant\n')
    n = image.shape[1]
    assert condition.embeds.shape[1] == len(head) + n + len(tail)
    with torch.no_grad():
        assert torch.equal(condition.embeds[0, :len(head)], embed(umm, head))
        assert torch.equal(condition.embeds[0, len(head):len(head) + n],
                           image[0])
        assert torch.equal(condition.embeds[0, len(head) + n:],
                           embed(umm, tail))


def test_text_condition_and_null_prompt(umm):
    with torch.no_grad():
        condition = umm.text_condition(['a red circle', None])
    for row, text in enumerate(['Generate an image: a red circle',
                                'Generate an image.']):
        expected = ids(umm, f'<|im_start|>user\n{text}<|im_end|>\n'
                            '<|im_start|>assistant\n')
        real = condition.mask[row].bool()
        with torch.no_grad():
            assert torch.equal(condition.embeds[row, real],
                               embed(umm, expected))


def test_conversation_scores_answers_and_their_end_token(umm):
    tokens, labels = umm.conversation_tokens(
        [('What is it?', 'A circle.'), ('Colour?', 'Red.')], 4)
    scored = [t for t, label in zip(tokens, labels) if label != -100]
    assert scored == ids(umm, 'A circle.<|im_end|>') + \
        ids(umm, 'Red.<|im_end|>')
    assert tokens[:3] == ids(umm, '<|im_start|>user\n')
    assert tokens[3:7] == [None] * 4


def test_understanding_gradient_is_scaled_not_detached():
    """Harmon trains its understanding path with a tenth of the gradient:
    the forward is unchanged, every gradient into the understanding
    embeddings is exactly 0.1x (proj_in gets its image-to-text gradient
    only through them)."""
    conversations = [[('What is it?', 'Shapes.')]] * 2

    def proj_in_grad(scale):
        umm = build(HARMON, seed=3, grad_scale=scale).umm
        loss = umm.understanding_loss(pixels(), conversations)['loss']
        loss.backward()
        return loss.detach(), umm.proj_in[0].weight.grad.clone()

    loss_full, grad_full = proj_in_grad(1.0)
    loss_scaled, grad_scaled = proj_in_grad(0.1)
    assert torch.equal(loss_full, loss_scaled)
    assert grad_full.abs().sum() > 0
    torch.testing.assert_close(grad_scaled, 0.1 * grad_full)


def test_no_decay_on_the_diffusion_head():
    from reca_toolkit.engine.optim_constructor import \
        DecayGroupsOptimWrapperConstructor
    model = build(HARMON)
    wrapper = DecayGroupsOptimWrapperConstructor(dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.02)))(model)
    decay, no_decay = wrapper.optimizer.param_groups
    head = {id(p) for p in model.umm.mar.diffloss.parameters()}
    assert head and head <= {id(p) for p in no_decay['params']}
    assert not head & {id(p) for p in decay['params']}
    matrix = model.umm.mar.encoder_blocks[0].attn.qkv.weight
    assert any(p is matrix for p in decay['params'])


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    model = build(HARMON, seed=2)
    out = model.umm.save_pretrained(tmp_path_factory.mktemp('h') / 'export')
    return model, out


def reload(folder):
    return reload_export(HARMON, folder)


def test_export_writes_the_harmon_layout(exported):
    _, out = exported
    assert sorted(p.name for p in out.iterdir()) == [
        'config.json', 'harmon_1.5b.pth', 'harmon_1.5b.safetensors',
        'kl16.safetensors', 'tokenizer.json', 'tokenizer_config.json']
    state = torch.load(out / 'harmon_1.5b.pth', weights_only=True)
    assert {k.split('.')[0] for k in state} == {'llm', 'mar', 'proj_in',
                                                'proj_out'}
    assert 'llm.model.layers.0.self_attn.q_proj.weight' in state
    assert 'mar.diffloss.net.input_proj.weight' in state


def test_pickled_weights_load_as_the_safetensors_do(exported, tmp_path):
    """The .pth path (weights_only) gives the same model as safetensors."""
    model, out = exported
    pickled = tmp_path / 'pickled'
    shutil.copytree(out, pickled)
    (pickled / 'harmon_1.5b.safetensors').unlink()
    reloaded = reload(pickled)
    for name, value in model.umm.state_dict().items():
        assert torch.equal(reloaded.umm.state_dict()[name], value), name


def test_incomplete_folder_fails_naming_each_missing_file(exported,
                                                          tmp_path):
    _, out = exported
    broken = tmp_path / 'broken'
    shutil.copytree(out, broken)
    for name in ('harmon_1.5b.pth', 'harmon_1.5b.safetensors',
                 'tokenizer.json'):
        (broken / name).unlink()
    with pytest.raises(FileNotFoundError) as error:
        reload(broken)
    message = str(error.value)
    assert 'harmon_1.5b.pth' in message and 'tokenizer.json' in message
    assert 'kl16' not in message.split('missing:')[1]


def test_pickle_that_runs_code_is_refused(exported, tmp_path):
    _, out = exported
    evil = tmp_path / 'evil'
    shutil.copytree(out, evil)
    (evil / 'harmon_1.5b.safetensors').unlink()
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))

    torch.save({'llm.x': Payload()}, evil / 'harmon_1.5b.pth')
    with pytest.raises(Exception, match='harmon_1.5b.pth'):
        reload(evil)
    assert not marker.exists()
