"""jaxgan.data without files: batching, subsets, pixel conversions, 2-D mixtures."""

import json

import jax
import numpy as np
import pytest

from jaxgan import data


def _toy(n=103, num_classes=5, seed=0):
  """Images whose pixels encode the row id (so rows can be traced), labels by class."""
  rng = np.random.default_rng(seed)
  ids = np.arange(n)
  image = np.zeros((n, 4, 4, 1), np.uint8)
  image[:, 0, 0, 0] = ids % 256
  image[:, 0, 1, 0] = ids // 256
  image[:, 1:, :, 0] = rng.integers(0, 256, (n, 3, 4))
  return {'image': image, 'label': rng.integers(0, num_classes, n), 'id': ids}


def _take(batches, k):
  return [batches.next() for _ in range(k)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


# ----------------------------------------------------------------------------- Batches


def test_batches_follow_the_documented_order_and_convert():
  arrays = _toy()
  n, bsz, seed = 103, 10, 7
  batches = data.Batches(arrays, bsz, seed=seed)
  assert batches.steps_per_epoch == 10
  for step, got in enumerate(_take(batches, 25)):
    epoch, t = divmod(step, 10)
    rows = np.random.default_rng([seed, epoch]).permutation(n)[t * bsz : (t + 1) * bsz]
    np.testing.assert_array_equal(got['id'], rows)
    np.testing.assert_allclose(
      got['image'], arrays['image'][rows].astype(np.float64) / 127.5 - 1.0, atol=1e-6
    )
    assert got['image'].dtype == np.float32 and got['image'].shape == (bsz, 4, 4, 1)
    assert got['label'].dtype == np.int32
    np.testing.assert_array_equal(got['label'], arrays['label'][rows])


def test_each_epoch_visits_every_example_once_in_a_new_order():
  arrays = _toy(n=60)
  batches = data.Batches(arrays, 12, seed=0)
  epochs = [np.concatenate([b['id'] for b in _take(batches, 5)]) for _ in range(3)]
  for order in epochs:
    np.testing.assert_array_equal(np.sort(order), np.arange(60))
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_batches_are_deterministic_per_seed():
  arrays = _toy()
  _assert_same(
    _take(data.Batches(arrays, 8, seed=3), 30), _take(data.Batches(arrays, 8, seed=3), 30)
  )
  a = np.concatenate([b['id'] for b in _take(data.Batches(arrays, 8, seed=3), 5)])
  b = np.concatenate([b['id'] for b in _take(data.Batches(arrays, 8, seed=4), 5)])
  assert not np.array_equal(a, b)


@pytest.mark.parametrize('k', [0, 1, 9, 10, 37])
def test_resume_at_any_position_matches_uninterrupted(k):
  arrays = _toy()
  reference = _take(data.Batches(arrays, 10, seed=1), k + 15)[k:]
  first = data.Batches(arrays, 10, seed=1)
  _take(first, k)
  saved = json.loads(json.dumps(first.get_state()))  # as a checkpoint stores it
  assert saved['step'] == k and all(isinstance(v, int) for v in saved.values())
  restored = data.Batches(arrays, 10, seed=1)
  restored.set_state(saved)
  _assert_same(_take(restored, 15), reference)
  _assert_same(_take(data.Batches(arrays, 10, seed=1, start_step=k), 15), reference)


def test_process_shards_are_disjoint_and_form_the_global_batch():
  arrays = _toy(n=200)
  glob = _take(data.Batches(arrays, 16, seed=5), 30)
  shards = [
    _take(
      data.Batches(arrays, 16, seed=5, process_index=p, process_count=4, local_device_count=2), 30
    )
    for p in range(4)
  ]
  for step in range(30):
    parts = [shards[p][step]['id'] for p in range(4)]
    assert all(len(part) == 4 for part in parts)
    assert len(set(np.concatenate(parts).tolist())) == 16
    np.testing.assert_array_equal(np.concatenate(parts), glob[step]['id'])


def test_no_shuffle_and_keep_remainder():
  arrays = _toy(n=23)
  batches = data.Batches(arrays, 5, seed=0, shuffle=False, drop_remainder=False)
  assert batches.steps_per_epoch == 5
  got = _take(batches, 6)
  assert [len(b['id']) for b in got] == [5, 5, 5, 5, 3, 5]
  np.testing.assert_array_equal(np.concatenate([b['id'] for b in got[:5]]), np.arange(23))
  np.testing.assert_array_equal(got[5]['id'], np.arange(5))


def test_float_images_pass_through():
  points = data.gaussian_mixture('8ring', 40, seed=0)
  batches = data.Batches(
    {'image': points, 'label': np.zeros(40, np.int64)}, 8, seed=0, shuffle=False
  )
  np.testing.assert_array_equal(batches.next()['image'], points[:8])


def test_random_access_source_equals_arrays():
  arrays = _toy(n=50)
  examples = [{key: value[i] for key, value in arrays.items()} for i in range(50)]
  a = data.Batches(arrays, 6, seed=2, process_index=1, process_count=2)
  b = data.Batches(examples, 6, seed=2, process_index=1, process_count=2)
  _assert_same(_take(a, 12), _take(b, 12))


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(batch_size=10, process_count=4), 'not divisible by the number of processes 4'),
    (
      dict(batch_size=12, process_count=2, local_device_count=4),
      'not divisible by the 4 local devices',
    ),
    (dict(batch_size=200), 'larger than the dataset'),
    (dict(batch_size=0), 'batch_size must be a positive integer'),
    (dict(batch_size=8, process_index=2, process_count=2), r'process_index must be in \[0, 2\)'),
    (
      dict(batch_size=10, drop_remainder=False, process_count=2),
      'last batch of each epoch has 3 rows',
    ),
    (dict(batch_size=8, seed=-1), 'seed must be a non-negative integer'),
  ],
)
def test_batches_reject_bad_input(kwargs, match):
  kwargs = {'seed': 0, **kwargs}
  with pytest.raises(ValueError, match=match):
    data.Batches(_toy(), **kwargs)


def test_set_state_rejects_a_foreign_position():
  arrays = _toy()
  state = data.Batches(arrays, 10, seed=1, start_step=4).get_state()
  with pytest.raises(ValueError, match='batch_size: saved 10, here 8'):
    data.Batches(arrays, 8, seed=1).set_state(state)
  with pytest.raises(ValueError, match='num_examples: saved 103, here 50'):
    data.Batches(_toy(n=50), 10, seed=1).set_state(state)
  with pytest.raises(ValueError, match="'step'"):
    data.Batches(arrays, 10, seed=1).set_state({'epoch': 3})
  with pytest.raises(ValueError, match='same number of rows'):
    data.Batches({'image': np.zeros((5, 2)), 'label': np.zeros(4)}, 2, seed=0)


def test_the_benchmarks_grain_pipeline_keeps_the_batches_guarantees():
  """experiments/bench_input.py compares with a grain pipeline that does the same job."""
  pytest.importorskip('grain')
  from experiments.bench_input import GrainBatches, NumpyOrderGrain

  arrays = _toy(n=40)
  glob = _take(GrainBatches(arrays, 8, seed=0, num_threads=0), 12)
  ids = np.concatenate([b['id'] for b in glob])
  for e in range(2):  # every epoch visits every example once
    np.testing.assert_array_equal(np.sort(ids[40 * e : 40 * (e + 1)]), np.arange(40))
  shards = [GrainBatches(arrays, 8, seed=0, process_index=p, process_count=2) for p in range(2)]
  for step in range(12):
    np.testing.assert_array_equal(
      np.concatenate([s.next()['id'] for s in shards]), glob[step]['id']
    )
  resumed = GrainBatches(arrays, 8, seed=0)
  resumed.set_state(json.loads(json.dumps(shards[0].get_state())))
  assert resumed.get_state() == {'next_index': 12}
  np.testing.assert_array_equal(
    resumed.next()['id'], GrainBatches(arrays, 8, seed=0).dataset[12]['id']
  )
  _assert_same(
    _take(NumpyOrderGrain(arrays, 8, seed=3), 9), _take(data.Batches(arrays, 8, seed=3), 9)
  )


# ----------------------------------------------------------------------------- subset


def test_subset_exact_counts_and_rows():
  arrays = _toy(n=1000)
  for kwargs, n in ((dict(fraction=0.1), 100), (dict(fraction=0.0125), 12), (dict(count=37), 37)):
    sub = data.subset(arrays, seed=3, **kwargs)
    assert len(sub['id']) == n and len(np.unique(sub['id'])) == n
    np.testing.assert_array_equal(sub['image'], arrays['image'][sub['id']])
    np.testing.assert_array_equal(sub['label'], arrays['label'][sub['id']])
    assert np.all(np.diff(sub['id']) > 0)  # original order kept


def test_subset_is_deterministic_and_seeded():
  arrays = _toy(n=500)
  a = data.subset(arrays, count=50, seed=1)['id']
  np.testing.assert_array_equal(a, data.subset(arrays, count=50, seed=1)['id'])
  assert not np.array_equal(a, data.subset(arrays, count=50, seed=2)['id'])


@pytest.mark.parametrize('count', [50, 53, 7])
def test_subset_class_balanced(count):
  arrays = _toy(n=1000, num_classes=5)
  sub = data.subset(arrays, count=count, seed=0, class_balanced=True)
  per_class = np.bincount(sub['label'], minlength=5)
  assert per_class.sum() == count
  assert set(per_class.tolist()) <= {count // 5, count // 5 + 1}
  np.testing.assert_array_equal(sub['label'], arrays['label'][sub['id']])
  again = data.subset(arrays, count=count, seed=0, class_balanced=True)
  np.testing.assert_array_equal(sub['id'], again['id'])


def test_subset_rejects_bad_input():
  arrays = _toy(n=100, num_classes=5)
  with pytest.raises(ValueError, match='exactly one of fraction or count'):
    data.subset(arrays, fraction=0.1, count=10)
  with pytest.raises(ValueError, match='exactly one of fraction or count'):
    data.subset(arrays)
  with pytest.raises(ValueError, match=r'count must be an integer in \[1, 100\]'):
    data.subset(arrays, count=101)
  with pytest.raises(ValueError, match='rounds to 0'):
    data.subset(arrays, fraction=0.001)
  skewed = {'image': np.zeros((12, 1)), 'label': np.array([0] * 10 + [1] * 2)}
  with pytest.raises(ValueError, match='class 1, which has only 2'):
    data.subset(skewed, count=8, class_balanced=True)
  with pytest.raises(ValueError, match='labels are -1'):
    data.subset(
      {'image': np.zeros((4, 1)), 'label': -np.ones(4, np.int64)}, count=2, class_balanced=True
    )


def test_holdout_split_partitions_with_balanced_test():
  arrays = _toy(n=500, num_classes=5)
  split = data.holdout_split(arrays, test_count=50, seed=0)
  test_ids, train_ids = split['test']['id'], split['train']['id']
  np.testing.assert_array_equal(np.bincount(split['test']['label'], minlength=5), np.full(5, 10))
  assert not set(test_ids) & set(train_ids)
  np.testing.assert_array_equal(np.sort(np.concatenate([test_ids, train_ids])), np.arange(500))
  np.testing.assert_array_equal(split['train']['label'], arrays['label'][train_ids])


# ----------------------------------------------------------------------------- pixels


def test_to_float_and_back_on_every_value():
  values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  x = data.to_float(values)
  assert x.dtype == np.float32
  np.testing.assert_allclose(x, values.astype(np.float64) / 127.5 - 1.0, rtol=0, atol=1e-7)
  assert x.min() == -1.0 and x.max() == 1.0
  np.testing.assert_array_equal(data.to_uint8(x), values)
  np.testing.assert_array_equal(data.to_uint8(np.array([-3.0, 2.0, 0.0])), [0, 255, 128])
  with pytest.raises(ValueError, match='got dtype float32'):
    data.to_float(x)
  with pytest.raises(ValueError, match='expects float'):
    data.to_uint8(values)


def test_pad_to():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (2, 28, 28, 3)).astype(np.float32)
  out = data.pad_to(images, 32)
  assert out.shape == (2, 32, 32, 3) and out.dtype == np.float32
  np.testing.assert_array_equal(out[:, 2:30, 2:30], images)
  border = np.ones((32, 32), bool)
  border[2:30, 2:30] = False
  assert np.all(out[:, border] == -1.0)
  odd = data.pad_to(np.full((1, 5, 4, 1), 7, np.uint8), (8, 5))
  assert odd.shape == (1, 8, 5, 1)
  np.testing.assert_array_equal(
    odd[0, :, :, 0] == 7, np.pad(np.ones((5, 4), bool), ((1, 2), (0, 1)))
  )
  assert odd.sum() == 7 * 20  # uint8 images are padded with 0
  with pytest.raises(ValueError, match='never crops'):
    data.pad_to(images, 16)


# ----------------------------------------------------------------------------- 2-D mixtures


def test_mixture_centers():
  ring = data.mixture_spec('8ring')
  np.testing.assert_allclose(np.linalg.norm(ring.centers, axis=1), 2.0, rtol=1e-6)
  angles = np.sort(np.mod(np.degrees(np.arctan2(ring.centers[:, 1], ring.centers[:, 0])), 360))
  np.testing.assert_allclose(angles, np.arange(0, 360, 45), atol=1e-4)
  assert ring.std == 0.02
  grid = data.mixture_spec('25grid')
  assert {tuple(c) for c in grid.centers.tolist()} == {
    (x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)
  }
  assert grid.std == 0.05


@pytest.mark.parametrize('name', ['8ring', '25grid'])
def test_mixture_samples_statistics(name):
  spec = data.mixture_spec(name)
  k = len(spec.centers)
  n = 2000 * k
  points = data.gaussian_mixture(name, n, seed=0)
  assert points.shape == (n, 2) and points.dtype == np.float32
  d2 = ((points[:, None, :].astype(np.float64) - spec.centers[None]) ** 2).sum(-1)
  nearest = d2.argmin(1)
  counts = np.bincount(nearest, minlength=k)
  chi2 = ((counts - n / k) ** 2 / (n / k)).sum()
  assert chi2 < k + 6 * np.sqrt(2 * k)  # uniform over modes (loose)
  for m in range(k):
    resid = points[nearest == m] - spec.centers[m]
    np.testing.assert_allclose(resid.mean(0), 0.0, atol=5 * spec.std / np.sqrt(counts[m]))
    np.testing.assert_allclose(resid.std(0), spec.std, rtol=0.1)


def test_mixture_keys_seeds_and_errors():
  a = data.gaussian_mixture('8ring', 100, jax.random.PRNGKey(3))
  np.testing.assert_array_equal(a, data.gaussian_mixture('8ring', 100, jax.random.PRNGKey(3)))
  np.testing.assert_array_equal(a, data.gaussian_mixture('8ring', 100, jax.random.key(3)))
  assert not np.array_equal(a, data.gaussian_mixture('8ring', 100, jax.random.PRNGKey(4)))
  b = data.gaussian_mixture('8ring', 100, seed=3)
  np.testing.assert_array_equal(b, data.gaussian_mixture('8ring', 100, seed=3))
  assert not np.array_equal(b, data.gaussian_mixture('8ring', 100, seed=4))
  wide = data.gaussian_mixture('8ring', 4000, seed=0, std=0.5)
  assert 0.4 < np.std(np.linalg.norm(wide, axis=1)) < 0.6
  with pytest.raises(ValueError, match="unknown Gaussian mixture 'ring'"):
    data.gaussian_mixture('ring', 10, seed=0)
  with pytest.raises(ValueError, match='exactly one of key'):
    data.gaussian_mixture('8ring', 10)
  with pytest.raises(ValueError, match='positive integer'):
    data.gaussian_mixture('25grid', 0, seed=0)
