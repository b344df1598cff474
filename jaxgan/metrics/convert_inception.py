"""Converts pytorch-fid's Inception weights to :class:`InceptionV3` variables.

The weights are not downloadable here; users fetch pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (95,628,359 bytes) themselves and check it::

    sha256sum pt_inception-2015-12-05-6726825d.pth
    # 6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2

(``6726825d`` in the name is the first 8 hex digits of that SHA-256, ``torch.hub``'s convention).
Then, with ``torch`` installed (needed only for this step)::

    python -m jaxgan.metrics.convert_inception pt_inception-2015-12-05-6726825d.pth \
        ~/.cache/jaxgan/inception/fid_inception_v3.npz

The CLI checks the input's SHA-256 (``--allow-unknown`` converts another file anyway), writes an
``.npz`` with one array per leaf, keyed ``params/<module path>/<name>`` and
``batch_stats/<module path>/<name>``, plus a ``__meta__`` JSON record (source SHA-256 and a
digest of the arrays), and prints the written file's SHA-256. :func:`torch_to_flax` gives the
key mapping.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.metrics.features import FeatureExtractor
from jaxgan.metrics.inception_v3 import InceptionV3

PYTORCH_FID_WEIGHTS_NAME = 'pt_inception-2015-12-05-6726825d.pth'
PYTORCH_FID_WEIGHTS_SHA256 = '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'
PYTORCH_FID_WEIGHTS_BYTES = 95_628_359

PyTree = Any

# (torch suffix) -> (collection, flax leaf name, transpose axes or None)
_LEAF_MAP = {
  ('conv', 'weight'): ('params', 'kernel', (2, 3, 1, 0)),
  ('bn', 'weight'): ('params', 'scale', None),
  ('bn', 'bias'): ('params', 'bias', None),
  ('bn', 'running_mean'): ('batch_stats', 'mean', None),
  ('bn', 'running_var'): ('batch_stats', 'var', None),
  ('fc', 'weight'): ('params', 'kernel', (1, 0)),
  ('fc', 'bias'): ('params', 'bias', None),
}


def file_sha256(path: str | os.PathLike) -> str:
  """Hex SHA-256 of a file, read in 1 MiB chunks."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _expected_flat() -> dict[tuple, tuple]:
  return _flatten(expected_variables_shapes())


def expected_variables_shapes() -> PyTree:
  """The ``{'params', 'batch_stats'}`` shape tree of :class:`InceptionV3` (no compute)."""
  shapes = jax.eval_shape(
    InceptionV3(resize=False).init, jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3), jnp.float32)
  )
  return jax.tree.map(lambda s: tuple(s.shape), dict(shapes))


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, (*prefix, k)))
    else:
      out[(*prefix, k)] = v
  return out


def _unflatten(flat: Mapping[tuple, Any]) -> dict:
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def torch_to_flax(state_dict: Mapping[str, np.ndarray], *, check: bool = True) -> dict:
  """Maps a pytorch-fid ``FIDInceptionV3`` state dict to Flax variables.

  Module paths are kept (``Mixed_6b.branch7x7_2.conv.weight`` -> ``Mixed_6b/branch7x7_2/conv``):
  ``*.conv.weight`` ``[O, I, kh, kw]`` -> ``params/*/conv/kernel`` ``[kh, kw, I, O]``;
  ``*.bn.weight``/``bias`` -> ``params/*/bn/scale``/``bias``; ``*.bn.running_mean``/``var`` ->
  ``batch_stats/*/bn/mean``/``var``; ``fc.weight`` ``[1008, 2048]`` -> ``params/fc/kernel``
  ``[2048, 1008]``, ``fc.bias`` as is; ``*.num_batches_tracked`` is dropped.

  Args:
    state_dict: key -> array (numpy, or anything ``np.asarray`` accepts), keys
      as in pytorch-fid (``Conv2d_1a_3x3.conv.weight``, ...).
    check: compare the result with :class:`InceptionV3`'s variable tree and
      raise on any missing, extra or mis-shaped leaf.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` of float32 numpy arrays.
  """
  flat = {}
  for key, value in state_dict.items():
    parts = key.split('.')
    if parts[-1] == 'num_batches_tracked':
      continue
    # 'fc' is the top-level classifier only; 'conv'/'bn' sit inside a named block.
    valid = len(parts) == 2 if parts[-2] == 'fc' else len(parts) >= 3
    rule = _LEAF_MAP.get(tuple(parts[-2:])) if valid else None
    if rule is None:
      raise ValueError(
        f'unexpected key {key!r} in the Inception state dict; expected the keys of '
        "pytorch-fid's FIDInceptionV3 (e.g. 'Conv2d_1a_3x3.conv.weight', 'fc.bias')."
      )
    collection, leaf, axes = rule
    array = np.asarray(value, np.float32)
    if axes is not None:
      if array.ndim != len(axes):
        raise ValueError(f'{key} should have {len(axes)} axes; got shape {array.shape}.')
      array = np.ascontiguousarray(array.transpose(axes))
    flat[(collection, *parts[:-1], leaf)] = array
  variables = _unflatten(flat)
  if check:
    _check_tree(variables)
  return variables


def _check_tree(variables: Mapping) -> None:
  expected = _expected_flat()
  got = _flatten(variables)
  missing = sorted('/'.join(p) for p in expected.keys() - got.keys())
  extra = sorted('/'.join(p) for p in got.keys() - expected.keys())
  wrong = sorted(
    f'{"/".join(p)}: {np.shape(got[p])} != {expected[p]}'
    for p in expected.keys() & got.keys()
    if tuple(np.shape(got[p])) != expected[p]
  )
  if missing or extra or wrong:
    raise ValueError(
      'Inception variables do not match InceptionV3: '
      f'missing {missing[:5]}{"..." if len(missing) > 5 else ""}, '
      f'unexpected {extra[:5]}{"..." if len(extra) > 5 else ""}, '
      f'wrong shapes {wrong[:5]}{"..." if len(wrong) > 5 else ""}. '
      "Is this pytorch-fid's pt_inception-2015-12-05 file?"
    )


def arrays_digest(variables: Mapping) -> str:
  """SHA-256 over the sorted leaf paths, shapes and float32 bytes (file-format independent)."""
  h = hashlib.sha256()
  for path, value in sorted(_flatten(variables).items()):
    a = np.ascontiguousarray(value, np.float32)
    h.update('/'.join(path).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()


def save_inception_variables(
  path: str | os.PathLike, variables: Mapping, source_sha256: str
) -> str:
  """Writes the ``.npz`` described in the module docstring; returns its SHA-256."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {'/'.join(p): np.asarray(v, np.float32) for p, v in _flatten(variables).items()}
  meta = {'source_sha256': source_sha256, 'arrays_sha256': arrays_digest(variables)}
  tmp = path.with_name(path.name + '.tmp')
  with open(tmp, 'wb') as f:
    np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
  os.replace(tmp, path)
  return file_sha256(path)


def load_inception_variables(path: str | os.PathLike) -> tuple[dict, dict]:
  """Reads an ``.npz`` written by the converter; checks its array digest.

  Returns:
    ``(variables, meta)``: ``{'params', 'batch_stats'}`` and the ``__meta__``
    record (``source_sha256``, ``arrays_sha256``).
  """
  with np.load(path, allow_pickle=False) as f:
    meta = json.loads(str(f['__meta__']))
    flat = {tuple(k.split('/')): f[k] for k in f.files if k != '__meta__'}
  variables = _unflatten(flat)
  digest = arrays_digest(variables)
  if digest != meta.get('arrays_sha256'):
    raise ValueError(
      f'{path}: array digest {digest} does not match the recorded {meta.get("arrays_sha256")}; '
      'the file is corrupt. Convert the .pth again.'
    )
  _check_tree(variables)
  return variables, meta


def inception_extractor(weights_path: str | os.PathLike, batch_size: int = 50) -> FeatureExtractor:
  """The FID Inception-v3 as a :class:`FeatureExtractor` (pool3 ``features``, 1008 ``logits``).

  Args:
    weights_path: ``.npz`` written by this module's CLI.
    batch_size: default extraction batch size.

  The extractor's name is ``inception_v3_fid@<first 12 hex digits of the
  source .pth SHA-256>``; the name carries ``-unverified`` when the source was
  not the pytorch-fid file.
  """
  variables, meta = load_inception_variables(weights_path)
  source = meta.get('source_sha256', '')
  name = f'inception_v3_fid@{source[:12]}'
  if source != PYTORCH_FID_WEIGHTS_SHA256:
    name += '-unverified'
  return FeatureExtractor(
    name=name, apply=_inception_apply, params=variables, image_shape=None, batch_size=batch_size
  )


def _inception_apply(variables: PyTree, images: jax.Array) -> dict[str, jax.Array]:
  return InceptionV3().apply(variables, images)


def _read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
      'reading a .pth needs PyTorch: pip install torch (only for this conversion step).'
    ) from e
  state = torch.load(path, map_location='cpu', weights_only=True)
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('pth', help=f'pytorch-fid weights ({PYTORCH_FID_WEIGHTS_NAME})')
  parser.add_argument('out', help='output .npz')
  parser.add_argument(
    '--allow-unknown', action='store_true', help='convert even if the SHA-256 is not the known one'
  )
  args = parser.parse_args(argv)
  source_sha = file_sha256(args.pth)
  print(f'input  {args.pth}\n  sha256 {source_sha}')
  if source_sha != PYTORCH_FID_WEIGHTS_SHA256:
    msg = (
      f'{args.pth} has SHA-256 {source_sha}, not the pytorch-fid weights '
      f'({PYTORCH_FID_WEIGHTS_SHA256}); the download may be corrupt.'
    )
    if not args.allow_unknown:
      raise SystemExit(msg + ' Pass --allow-unknown to convert it anyway.')
    print('warning: ' + msg)
  variables = torch_to_flax(_read_torch_state_dict(args.pth))
  out_sha = save_inception_variables(args.out, variables, source_sha)
  print(f'output {args.out}\n  sha256 {out_sha}')


if __name__ == '__main__':
  main()
