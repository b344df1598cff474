"""FID Inception-v3 in Flax with random weights: converter mapping, shapes, determinism, resize.

Real weights cannot be downloaded here. The parameter mapping is checked on a
fake PyTorch state dict built from the published pytorch-fid architecture
(names and PyTorch layouts listed below, independently of the Flax module).
The numerical match with pytorch-fid itself is a slow test that runs only
where ``pytorch_fid`` (and torchvision) import.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.metrics import convert_inception as conv
from jaxgan.metrics.inception_v3 import InceptionV3, resize_for_inception

# ----------------------------------------------------------------------------- the PyTorch layout


def _block_a(name, cin, pool):
  return [
    (f'{name}.branch1x1', cin, 64, 1, 1),
    (f'{name}.branch5x5_1', cin, 48, 1, 1),
    (f'{name}.branch5x5_2', 48, 64, 5, 5),
    (f'{name}.branch3x3dbl_1', cin, 64, 1, 1),
    (f'{name}.branch3x3dbl_2', 64, 96, 3, 3),
    (f'{name}.branch3x3dbl_3', 96, 96, 3, 3),
    (f'{name}.branch_pool', cin, pool, 1, 1),
  ]


def _block_c(name, c7):
  return [
    (f'{name}.branch1x1', 768, 192, 1, 1),
    (f'{name}.branch7x7_1', 768, c7, 1, 1),
    (f'{name}.branch7x7_2', c7, c7, 1, 7),
    (f'{name}.branch7x7_3', c7, 192, 7, 1),
    (f'{name}.branch7x7dbl_1', 768, c7, 1, 1),
    (f'{name}.branch7x7dbl_2', c7, c7, 7, 1),
    (f'{name}.branch7x7dbl_3', c7, c7, 1, 7),
    (f'{name}.branch7x7dbl_4', c7, c7, 7, 1),
    (f'{name}.branch7x7dbl_5', c7, 192, 1, 7),
    (f'{name}.branch_pool', 768, 192, 1, 1),
  ]


def _block_e(name, cin):
  return [
    (f'{name}.branch1x1', cin, 320, 1, 1),
    (f'{name}.branch3x3_1', cin, 384, 1, 1),
    (f'{name}.branch3x3_2a', 384, 384, 1, 3),
    (f'{name}.branch3x3_2b', 384, 384, 3, 1),
    (f'{name}.branch3x3dbl_1', cin, 448, 1, 1),
    (f'{name}.branch3x3dbl_2', 448, 384, 3, 3),
    (f'{name}.branch3x3dbl_3a', 384, 384, 1, 3),
    (f'{name}.branch3x3dbl_3b', 384, 384, 3, 1),
    (f'{name}.branch_pool', cin, 192, 1, 1),
  ]


CONVS = [
  ('Conv2d_1a_3x3', 3, 32, 3, 3),
  ('Conv2d_2a_3x3', 32, 32, 3, 3),
  ('Conv2d_2b_3x3', 32, 64, 3, 3),
  ('Conv2d_3b_1x1', 64, 80, 1, 1),
  ('Conv2d_4a_3x3', 80, 192, 3, 3),
  *_block_a('Mixed_5b', 192, 32),
  *_block_a('Mixed_5c', 256, 64),
  *_block_a('Mixed_5d', 288, 64),
  ('Mixed_6a.branch3x3', 288, 384, 3, 3),
  ('Mixed_6a.branch3x3dbl_1', 288, 64, 1, 1),
  ('Mixed_6a.branch3x3dbl_2', 64, 96, 3, 3),
  ('Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3),
  *_block_c('Mixed_6b', 128),
  *_block_c('Mixed_6c', 160),
  *_block_c('Mixed_6d', 160),
  *_block_c('Mixed_6e', 192),
  ('Mixed_7a.branch3x3_1', 768, 192, 1, 1),
  ('Mixed_7a.branch3x3_2', 192, 320, 3, 3),
  ('Mixed_7a.branch7x7x3_1', 768, 192, 1, 1),
  ('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7),
  ('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1),
  ('Mixed_7a.branch7x7x3_4', 192, 192, 3, 3),
  *_block_e('Mixed_7b', 1280),
  *_block_e('Mixed_7c', 2048),
]


def fake_state_dict(seed=0):
  """pytorch-fid key names and PyTorch shapes; He-scaled random values."""
  rng = np.random.default_rng(seed)
  sd = {}
  for name, cin, cout, kh, kw in CONVS:
    sd[f'{name}.conv.weight'] = rng.standard_normal((cout, cin, kh, kw)) * np.sqrt(
      2 / (cin * kh * kw)
    )
    sd[f'{name}.bn.weight'] = rng.uniform(0.5, 1.5, cout)
    sd[f'{name}.bn.bias'] = rng.normal(0, 0.1, cout)
    sd[f'{name}.bn.running_mean'] = rng.normal(0, 0.1, cout)
    sd[f'{name}.bn.running_var'] = rng.uniform(0.5, 1.5, cout)
  sd['fc.weight'] = rng.standard_normal((1008, 2048)) * 0.02
  sd['fc.bias'] = rng.normal(0, 0.1, 1008)
  sd = {k: v.astype(np.float32) for k, v in sd.items()}
  for name, *_ in CONVS:  # a PyTorch buffer the converter drops
    sd[f'{name}.bn.num_batches_tracked'] = np.array(7, np.int64)
  return sd


@pytest.fixture(scope='module')
def state_dict():
  return fake_state_dict()


@pytest.fixture(scope='module')
def variables(state_dict):
  return conv.torch_to_flax(state_dict)


# ----------------------------------------------------------------------------- converter


def _leaf(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def test_converter_puts_every_tensor_where_it_belongs(state_dict, variables):
  n_leaves = 0
  for name, *_ in CONVS:
    path = name.split('.')
    w = state_dict[f'{name}.conv.weight']
    np.testing.assert_array_equal(
      _leaf(variables['params'], [*path, 'conv', 'kernel']), w.transpose(2, 3, 1, 0)
    )
    for torch_name, collection, flax_name in [
      ('weight', 'params', 'scale'),
      ('bias', 'params', 'bias'),
      ('running_mean', 'batch_stats', 'mean'),
      ('running_var', 'batch_stats', 'var'),
    ]:
      np.testing.assert_array_equal(
        _leaf(variables[collection], [*path, 'bn', flax_name]),
        state_dict[f'{name}.bn.{torch_name}'],
      )
    n_leaves += 5
  np.testing.assert_array_equal(variables['params']['fc']['kernel'], state_dict['fc.weight'].T)
  np.testing.assert_array_equal(variables['params']['fc']['bias'], state_dict['fc.bias'])
  n_leaves += 2
  assert len(jax.tree.leaves(variables)) == n_leaves  # nothing else, num_batches_tracked dropped
  # torchvision's Inception-v3 without the aux head has 23,834,568 parameters
  # (27,161,264 minus the aux head's 3,326,696); 1008 classes add 8 * 2049.
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == 23_834_568 + 8 * 2049


def test_converted_tree_is_the_flax_model_tree(variables):
  shapes = conv.expected_variables_shapes()
  assert jax.tree.structure(shapes, is_leaf=lambda x: isinstance(x, tuple)) == jax.tree.structure(
    jax.tree.map(lambda a: tuple(a.shape), variables), is_leaf=lambda x: isinstance(x, tuple)
  )


def test_converter_rejects_unexpected_and_misshaped(state_dict):
  with pytest.raises(ValueError, match='unexpected key'):
    conv.torch_to_flax({**state_dict, 'AuxLogits.fc.weight': np.zeros((1008, 768))})
  bad = dict(state_dict)
  bad['Mixed_6b.branch7x7_2.conv.weight'] = np.zeros((128, 128, 7, 1), np.float32)  # 7x1, not 1x7
  with pytest.raises(ValueError, match='wrong shapes'):
    conv.torch_to_flax(bad)
  missing = {k: v for k, v in state_dict.items() if not k.startswith('Mixed_7c.branch_pool')}
  with pytest.raises(ValueError, match='missing'):
    conv.torch_to_flax(missing)


def test_npz_round_trip_digest_and_extractor_name(tmp_path, variables):
  path = tmp_path / 'fid_inception.npz'
  sha = conv.save_inception_variables(path, variables, conv.PYTORCH_FID_WEIGHTS_SHA256)
  assert sha == conv.file_sha256(path)
  loaded, meta = conv.load_inception_variables(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  assert meta['source_sha256'] == conv.PYTORCH_FID_WEIGHTS_SHA256
  assert conv.inception_extractor(path).name == 'inception_v3_fid@6726825d0af5'
  other = tmp_path / 'other.npz'
  conv.save_inception_variables(other, variables, 'ab' * 32)
  assert conv.inception_extractor(other).name.endswith('-unverified')
  # A changed array no longer matches the recorded digest.
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  arrays['params/fc/bias'] = arrays['params/fc/bias'] + 1
  np.savez(tmp_path / 'tampered.npz', **arrays)
  with pytest.raises(ValueError, match='corrupt'):
    conv.load_inception_variables(tmp_path / 'tampered.npz')


def test_cli_refuses_a_file_with_the_wrong_sha256(tmp_path):
  fake = tmp_path / 'not_the_weights.pth'
  fake.write_bytes(b'not a checkpoint')
  with pytest.raises(SystemExit, match='allow-unknown'):
    conv.main([str(fake), str(tmp_path / 'out.npz')])


# ----------------------------------------------------------------------------- resize


def _torch_bilinear_reference(img, out_size):
  """PyTorch's bilinear, align_corners=False, no antialias, written out per axis."""

  def axis_weights(n_in, n_out):
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] += 1 - frac
    m[np.arange(n_out), i1] += frac
    return m

  wy, wx = axis_weights(img.shape[0], out_size), axis_weights(img.shape[1], out_size)
  img = img.astype(np.float64)
  return np.stack([wy @ img[..., c] @ wx.T for c in range(img.shape[-1])], axis=-1)


# Downsampling places samples with float32 coordinates (~3e-5 px error on
# 320 px), which moves values of this pixel noise by up to ~1e-4; a different
# filter (antialiased, align_corners=True, ...) differs by ~0.1.
@pytest.mark.parametrize('size, channels, atol', [(28, 1, 1e-5), (32, 3, 1e-5), (320, 3, 2e-4)])
def test_resize_is_pytorch_bilinear_align_corners_false(size, channels, atol):
  img = np.random.default_rng(size).uniform(-1, 1, (1, size, size, channels)).astype(np.float32)
  out = np.asarray(resize_for_inception(jnp.asarray(img)))
  expected = _torch_bilinear_reference(np.repeat(img[0], 3 // channels, axis=-1), 299)
  assert out.shape == (1, 299, 299, 3)
  np.testing.assert_allclose(out[0], expected, atol=atol)


# ----------------------------------------------------------------------------- forward


def test_forward_shapes_determinism_and_batch_independence(variables):
  # 75x75 is the smallest input the architecture takes; no resize keeps it fast.
  module = InceptionV3(resize=False)
  apply = jax.jit(module.apply)
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 75, 75, 3), minval=-1, maxval=1)
  out = apply(variables, x)
  assert out['features'].shape == (3, 2048) and out['logits'].shape == (3, 1008)
  assert bool(jnp.all(out['features'] >= 0))  # average of ReLU outputs
  assert float(jnp.std(out['features'])) > 0  # random weights, not a dead network
  again = apply(variables, x)
  np.testing.assert_array_equal(out['features'], again['features'])
  perm = jnp.array([2, 0, 1])
  permuted = apply(variables, x[perm])  # inference BN: no mixing across the batch
  np.testing.assert_allclose(permuted['features'], out['features'][perm], rtol=1e-5, atol=1e-6)
  fc = variables['params']['fc']
  np.testing.assert_allclose(
    out['logits'], out['features'] @ fc['kernel'] + fc['bias'], rtol=1e-4, atol=1e-4
  )


def test_rejects_bad_input():
  with pytest.raises(ValueError, match='at least 75x75'):
    jax.eval_shape(InceptionV3(resize=False).init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match='1 or 3'):
    jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 2)))
  with pytest.raises(ValueError, match='inference-only'):
    jax.eval_shape(
      lambda: InceptionV3().init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=True)
    )


@pytest.mark.slow
def test_full_size_extractor_on_mnist_sized_input(tmp_path, variables):
  path = tmp_path / 'w.npz'
  conv.save_inception_variables(path, variables, conv.PYTORCH_FID_WEIGHTS_SHA256)
  extractor = conv.inception_extractor(path, batch_size=2)
  images = np.random.default_rng(0).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
  out = extractor(images)
  assert out['features'].shape == (3, 2048) and out['logits'].shape == (3, 1008)
  np.testing.assert_array_equal(out['features'], extractor(images)['features'])


@pytest.mark.slow
def test_matches_pytorch_fid_with_random_weights(state_dict, variables):
  torch = pytest.importorskip('torch')
  fid_inception = pytest.importorskip('pytorch_fid.inception')
  net = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  net.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
  net.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
  net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
  net.eval()
  images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    x = torch.as_tensor(images).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
    pool = torch.nn.Sequential(*list(net.children())[:-2])  # up to and with avgpool
    feats = pool(x).flatten(1).numpy()
    logits = net.fc(torch.as_tensor(feats)).numpy()
  out = jax.jit(InceptionV3().apply)(variables, jnp.asarray(images))
  print('max |diff| features', np.abs(out['features'] - feats).max(), 'scale', np.abs(feats).max())
  np.testing.assert_allclose(out['features'], feats, rtol=1e-4, atol=1e-4 * np.abs(feats).max())
  np.testing.assert_allclose(out['logits'], logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
