"""Trains (or loads) the MNIST evaluation classifier and reports its numbers.

    python -m experiments.train_classifier [--data-dir DIR] [--force] [--epochs 30] [--seed 0]

1. Trains LeNet-5 on the MNIST-5k train split (4,000 images) unless a cached
   checkpoint exists (``--force`` retrains), saves it in the data directory
   and prints the held-out accuracy on the 1,000 test images and the training
   time.
2. Unless ``--no-fid``: builds (and caches) the reference statistics of the
   train split under the classifier's penultimate features, then reports
   FID/KID/precision/recall/density/coverage/IS of the 1,000 held-out real
   test images against them, and of ``--n-fake`` samples from an untrained
   ``dcgan28`` generator, each with its protocol. ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import numpy as np

from jaxgan import data
from jaxgan.game import make_apply
from jaxgan.metrics import mnist
from jaxgan.metrics.classifier_training import ClassifierTrainConfig
from jaxgan.metrics.evaluate import evaluate_generator, evaluate_images


def untrained_generator_sampler(seed: int, latent_dim: int = 100):
  """``(key, n) -> [n, 28, 28, 1]`` from a freshly initialised dcgan28 generator."""
  from jaxgan.models import get_models

  g, _ = get_models('dcgan28', latent_dim=latent_dim, image_shape=(28, 28, 1))
  variables = dict(
    g.init(jax.random.PRNGKey(seed), np.zeros((2, latent_dim), np.float32), train=False)
  )
  variables.pop('perturbations', None)  # AdvAug hook inputs, not model state
  apply = make_apply(g)

  @functools.partial(jax.jit, static_argnums=1)
  def sample(key, n):
    z = jax.random.normal(key, (n, latent_dim))
    return apply(variables, z, train=False)[0]

  return sample


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    '--data-dir', default=None, help='default: $JAXGAN_DATA_DIR or ~/.cache/jaxgan/...'
  )
  parser.add_argument('--variant', default='lenet5', choices=sorted(mnist.VARIANTS))
  parser.add_argument('--force', action='store_true', help='retrain even if a checkpoint exists')
  parser.add_argument('--epochs', type=int, default=ClassifierTrainConfig.epochs)
  parser.add_argument('--seed', type=int, default=ClassifierTrainConfig.seed)
  parser.add_argument('--no-fid', action='store_true', help='skip the FID report')
  parser.add_argument('--n-fake', type=int, default=1000, help='untrained-generator samples')
  parser.add_argument('--json', default=None, help='write the report to this file')
  args = parser.parse_args(argv)

  config = ClassifierTrainConfig(epochs=args.epochs, seed=args.seed)
  params_path, meta_path = mnist.classifier_paths(args.data_dir, args.variant)
  start = time.perf_counter()
  if args.force or not meta_path.exists():
    print(f'training {args.variant} on mnist5k/train -> {params_path}')
    _, meta = mnist.train_and_save_classifier(
      args.data_dir, variant=args.variant, config=config, log=print
    )
  else:
    print(f'loading cached {params_path} (use --force to retrain)')
    _, _, meta = mnist.mnist_classifier(args.data_dir, variant=args.variant)
  print(
    f'held-out accuracy {meta["test_accuracy"]:.4f} on {meta["n_test"]} mnist5k/test images; '
    f'train accuracy {meta["train_accuracy"]:.4f}; training took {meta["train_seconds"]:.0f} s '
    f'({meta["epochs"]} epochs, seed {meta["seed"]}); sha256 {meta["sha256"]}'
  )
  report = {'classifier': meta}
  if not args.no_fid:
    extractor = mnist.mnist_extractor(args.data_dir, variant=args.variant)
    reference = mnist.mnist_reference(args.data_dir, 'train', extractor=extractor)
    test = data.load_arrays('mnist5k', 'test', data_dir=args.data_dir)
    report['real_test_vs_train'] = evaluate_images(
      data.to_float(test['image']), reference, extractor
    )
    sampler = untrained_generator_sampler(args.seed)
    report['untrained_dcgan28_vs_train'] = evaluate_generator(
      sampler, args.n_fake, reference, extractor, key=args.seed
    )
    for name in ('real_test_vs_train', 'untrained_dcgan28_vs_train'):
      numbers = {k: round(v, 4) for k, v in report[name].items() if k != 'protocol'}
      print(f'{name}: {numbers}\n  protocol: {report[name]["protocol"]}')
  print(f'total {time.perf_counter() - start:.0f} s')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=2, sort_keys=True, default=float)
  return report


if __name__ == '__main__':
  main()
