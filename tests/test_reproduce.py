"""experiments.reproduce: stored arm-seed runs, computed verdicts, the page and its status."""

import dataclasses
import itertools
import json

import pytest

from experiments import reproduce, study_page, study_runs, study_stats


def store(tmp_path, **kw):
  return study_runs.Store(results=tmp_path / 'results', work=tmp_path / 'work', **kw)


def test_store_reuses_stored_runs_and_lists_missing_ones(tmp_path):
  calls = []

  def make(seed):
    def compute(work, out):
      calls.append((work.name, out.name))
      return {'final': {'fid': 10.0 + seed}}

    return compute

  s = store(tmp_path)
  runs = s.arms({'A b%': ('study', make)}, 2)
  assert [r['final']['fid'] for r in runs['A b%']] == [10.0, 11.0]
  assert calls == [('seed0', 'seed0'), ('seed1', 'seed1')]
  assert (tmp_path / 'results' / 'study' / 'a_bpc' / 'seed1' / 'result.json').exists()
  again = s.arms({'A b%': ('study', make)}, 3)  # seeds 0, 1 reused, seed 2 trained
  assert len(calls) == 3 and len(again['A b%']) == 3
  page_only = store(tmp_path, train=False)
  runs = page_only.arms({'A b%': ('study', make), 'shared': ('other', make, 'A b%')}, 4)
  assert len(calls) == 3 and len(runs['A b%']) == 3 and runs['shared'] == []
  assert sorted(page_only.missing) == [('other', 'A b%', k) for k in range(4)] + [
    ('study', 'A b%', 3)
  ]


def test_claims_and_convergence_from_stored_curves(tmp_path):
  def run(d, fids):
    d.mkdir(parents=True)
    rows = [{'step': 100 * (i + 1), 'fid': f} for i, f in enumerate(fids)]
    (d / 'eval_log.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    return {'dir': str(d), 'final': {'fid': fids[-1]}, 'legible_fraction': 0.95}

  flat = [run(tmp_path / f'a{i}', [50.0, 20.0, 10.0 + i, 10.2 + i, 10.1 + i]) for i in range(3)]
  moving = [run(tmp_path / f'b{i}', [50.0, 30.0, 20.0, 15.0 + i, 12.0 + i]) for i in range(3)]
  assert study_page.convergence(flat)['converged']
  assert not study_page.convergence(moving)['converged']
  text = study_page.baseline_summary(flat, 1.87, 'two-stage')
  assert 'floor 1.87' in text and 'finished learning' in text and 'meets the 90%' in text
  assert study_page.baseline_status(flat, 1.87) == '11.1 (1.87), flat (1.8%), 95% legible'
  assert study_page.baseline_status(moving, 1.87).startswith('13.0 (1.87), moving (')
  runs = {'tech': moving, 'ref': flat}
  claim = reproduce.fid_claim('equal', runs, 'tech', 'ref')
  iv = study_stats.welch_interval([12.0, 13.0, 14.0], [10.1, 11.1, 12.1])
  assert claim.interval() == iv and claim.margin == pytest.approx(0.05 * 11.1)
  decided = study_stats.verdict(iv, lower_is_better=True, margin=claim.margin)
  assert claim.verdict() == f'provisional: {decided} (3 and 3 seeds; 5 each decide)'
  five = study_page.Claim(
    'c', 'm', [10.0, 11.0, 12.0, 10.5, 11.5], [20.0, 21, 22, 20.5, 21.5], True
  )
  assert five.verdict() == study_stats.REPRODUCED  # 5 seeds each: the verdict itself
  assert reproduce.steps_to_reach(flat[0], 10.5) == 300
  assert reproduce.steps_to_reach(moving[0], 10.0) is None
  assert reproduce.interpolate_fid(moving[0], 350) == pytest.approx(17.5)
  pending = study_page.Claim('c', 'm', [1.0], [1.0, 2.0], True)
  assert pending.verdict().startswith('pending') and '| - |' in pending.row()


def test_toy_study_section_page_and_status(tmp_path):
  scale = dataclasses.replace(reproduce.QUICK, toy_steps=8, toy_eval_every=4)
  s = store(tmp_path)
  ctx = reproduce.Context(scale, s, tmp_path, 'CMD', 1.87, None)
  section = reproduce.study_coopinit_grid(ctx)
  text = section.markdown()
  assert 'Command: `CMD`' in text and '| CoopInit + GAN | 2 |' in text
  assert '(Welch)' in text and len(section.claims) == 2
  verdicts = (study_stats.REPRODUCED, study_stats.NOT_REPRODUCED, study_stats.INCONCLUSIVE)
  assert all(
    c.verdict().startswith('provisional: ') and c.verdict().split(' (')[0][13:] in verdicts
    for c in section.claims
  )
  assert (tmp_path / 'coopinit_grid_modes.png').exists()
  stored = store(tmp_path, train=False).arms({'GAN': ('coopinit_grid', lambda seed: None)}, 1)
  evals = study_runs.evals(stored['GAN'][0])
  assert [e['step'] for e in evals] == [4, 8]
  out = tmp_path / 'docs' / 'RESULTS.md'
  (out.parent / 'results').mkdir(parents=True)
  reproduce.write_page(out, [section], scale, {'fid': 1.87, 'legible_fraction': 0.97}, None)
  page = out.read_text()
  assert '**1.87**' in page and 'CoopInit covers more modes' in page and 'No timing' in page
  status = tmp_path / 'STATUS.md'
  s.missing.append(('dat', 'DAT', 0))
  reproduce.write_status(status, s, quick=False)
  table = status.read_text()
  assert 'reproduce --commit' in table and '| dat | DAT | - | 0 |' in table
  assert '| coopinit_grid | GAN | 0, 1 | - |' in table


@pytest.mark.slow
def test_quick_reproduce_runs_every_study(tmp_path):
  sections = reproduce.main(['--quick', '--root', str(tmp_path)])
  assert len(sections) == len(reproduce.STUDIES)
  assert (tmp_path / 'docs' / 'RESULTS.md').exists()


def test_quickstart_trains_the_calibrated_study_setting():
  from experiments.configs import quickstart

  q, s = quickstart.get_config(), reproduce.mnist_config(reproduce.FULL.mnist, 0)
  for key in ('batch_size', 'num_steps', 'ema_decay', 'loss', 'trainer', 'model', 'latent_dim'):
    assert q[key] == s[key], key
  assert q.model_kwargs.to_dict() == s.model_kwargs.to_dict()
  assert q.g_optimizer.to_dict() == s.g_optimizer.to_dict()
  assert q.d_optimizer.to_dict() == s.d_optimizer.to_dict()


def test_a_stored_run_of_other_settings_is_refused_not_reused(tmp_path):
  from experiments.configs import default

  cfg = default.get_config()
  s = store(tmp_path)
  out = s.result_dir('study', 'arm', 0)
  out.mkdir(parents=True)
  (out / 'result.json').write_text('{"final": {"fid": 1.0}}')
  saved = json.loads(cfg.to_json_best_effort())
  del saved['g_optimizer']['schedule']  # a run stored before the field existed
  (out / 'config.json').write_text(json.dumps(saved))
  compute = study_runs.training_program(cfg)
  assert s.get('study', 'arm', 0, compute)['final']['fid'] == 1.0  # default value: same run
  cfg.g_optimizer.schedule = 'linear_decay'
  with pytest.raises(ValueError, match=r'other settings \(g_optimizer.schedule\); move it away'):
    s.get('study', 'arm', 0, compute)
  cfg.g_optimizer.schedule, cfg.num_steps, cfg.eval_every = 'constant', 7, 3
  assert study_runs.stale_fields(json.dumps(saved), cfg) == ['num_steps']  # not eval_every


def test_a_stored_script_run_of_other_or_unrecorded_settings_is_refused(tmp_path):
  calls = []

  def make(steps):
    def run(work, out):
      calls.append(steps)
      return {'final': {'fid': float(steps)}}

    return study_runs.script_run(run, {'seeds': '0', 'steps': steps, 'batch-size': 16})

  s = store(tmp_path)
  first = s.get('study', 'arm', 0, make(1500))
  assert first['settings'] == {'seeds': '0', 'steps': 1500, 'batch-size': 16}
  assert s.get('study', 'arm', 0, make(1500))['final']['fid'] == 1500.0 and calls == [1500]
  with pytest.raises(ValueError, match=r'other settings \(steps\); move it away'):
    s.get('study', 'arm', 0, make(2400))
  path = s.result_dir('study', 'arm', 0) / 'result.json'
  path.write_text('{"final": {"fid": 1.0}}')  # stored before settings were recorded
  with pytest.raises(ValueError, match=r'other settings \(settings \(not recorded\)\)'):
    s.get('study', 'arm', 0, make(1500))
  assert calls == [1500]
  assert study_runs.flags({'batch-size': 16, 't_init': 240}) == [
    '--batch-size',
    '16',
    '--t_init',
    '240',
  ]


def test_calibration_finding_names_the_legible_and_the_lowest_fid_candidates():
  def run(fid, legible):
    return [{'final': {'fid': fid}, 'legible_fraction': legible}]

  runs = {'a': run(30.0, 0.70), 'b': run(18.0, 0.66), 'c': [], 'd': run(40.0, 0.72)}
  text = reproduce.calibration_finding(runs)
  assert text.startswith('**No candidate meets the 90% legibility target**: 66.0-72.0% over 3')
  assert '(most legible: d)' in text and 'final FID, 18.00 (b), comes with 66.0% legible' in text
  runs['a'] = run(30.0, 0.91)
  assert reproduce.calibration_finding(runs) == 'Legible at the 90% target: a.'
  assert reproduce.calibration_finding({'a': []}) == ''


def test_one_seed_shows_no_spread_and_an_empty_reference_no_margin_value():
  assert study_page.fmt_mean_std([31.77]) == '31.77 (n=1)'
  assert study_page.fmt_mean_std([1.0, 3.0]) == '2.00 ± 1.41 (n=2)'
  runs = {'a': [{'final': {'fid': 31.77}}], 'b': []}
  claim = reproduce.fid_claim('a at most b', runs, 'a', 'b')
  assert claim.margin_note == '5% of the reference arm'
  assert '± 0.00' not in claim.row() and '(0.00)' not in claim.row()
  runs['b'] = [{'final': {'fid': 30.0}}, {'final': {'fid': 34.0}}]
  assert (
    reproduce.fid_claim('a at most b', runs, 'a', 'b').margin_note == '5% of the reference (1.60)'
  )


def test_translation_section_reports_the_baseline_curve_references_and_chance_content(
  tmp_path, monkeypatch
):
  refs = {
    'identity': {'fid_b': 407.9, 'content_acc': 0.274},
    'oracle': {'fid_b': 2.88, 'content_acc': 0.978},
  }
  argvs = []

  def fake_main(argv):
    argvs.append(argv)
    seed = int(argv[argv.index('--seeds') + 1])
    fids = [86.9, 36.4, 36.3, 36.0 + seed]
    curve = [{'step': 150 * (i + 1), 'fid_b': f, 'content_acc': 0.07} for i, f in enumerate(fids)]
    scores = {'fid_b': fids[-1], 'content_acc': 0.07, 'curve': curve}
    return {'runs': [{'scores': scores}], 'references': refs}

  monkeypatch.setattr(reproduce.translate_mnist, 'main', fake_main)
  trained = reproduce.Context(reproduce.QUICK, store(tmp_path), tmp_path, 'C', 1.87, None)
  reproduce.study_translation(trained)
  assert len(argvs) == 4 and all('--lr-decay-from' in a for a in argvs)
  ctx = reproduce.Context(reproduce.QUICK, store(tmp_path, train=False), tmp_path, 'C', 1.87, None)
  text = reproduce.study_translation(ctx).markdown()
  assert (
    'CUT baseline, FID to B: the last three evaluations of the seed-mean curve lie within' in text
  )
  assert '(flat; single seeds: up to ' in text and 'oracle) 2.88 and 0.978' in text
  assert "CUT's content accuracy, 0.070, is near chance (0.1)" in text
  assert 'Content accuracy per seed: CUT 0.070, 0.070; CUT + CoopInit 0.070, 0.070.' in text


def test_per_seed_lists_each_arm_in_run_order_and_skips_empty_arms():
  runs = {'a': [{'final': {'x': 1.25}}, {'final': {'x': 3.5}}], 'b': [], 'c': [{'final': {'x': 2}}]}
  text = study_page.per_seed(runs, study_page.final('x'), 'X', 1)
  assert text == 'X per seed: a 1.2, 3.5; c 2.0.'
  assert study_page.per_seed({'a': []}, study_page.final('x'), 'X', 1) == ''


def test_flatness_of_curves():
  assert study_page.flatness([], 'x') == ''
  assert study_page.flatness([[1.0, 2.0]], 'x') == ''
  moving = study_page.flatness([[9.0, 10.0, 10.0, 10.2], [5.0, 10.0, 11.0, 12.0]], 'acc')
  # seed-mean curve [7, 10, 10.5, 11.1]: 11.1 / 10 - 1 = 11%; single seeds 2.0% and 20.0%
  assert moving == (
    'acc: the last three evaluations of the seed-mean curve lie within 11.0% of one another '
    '(still moving; single seeds: up to 20.0%)'
  )
  flat = study_page.flatness([[9.0, 10.0, 10.0, 10.2], [5.0, 10.4, 10.2, 10.0]], 'acc')
  assert '(flat; single seeds: up to 4.0%)' in flat
  zero = study_page.flatness([[0.5, 0.2, 0.0, 0.1]], 'hq')
  assert zero.endswith('at or below 0 in some seed (still moving)')


@pytest.mark.parametrize('modes, samples', [(2, 1), (3, 3), (4, 2), (5, 4)])
def test_uniform_coverage_is_the_mean_count_of_distinct_modes_over_all_draws(modes, samples):
  draws = list(itertools.product(range(modes), repeat=samples))
  exact = sum(len(set(d)) for d in draws) / len(draws)
  assert reproduce.uniform_coverage(modes, samples) == pytest.approx(exact, rel=1e-12)


def test_mode_dropping_is_decided_by_the_interval_against_uniform_coverage():
  assert 'it demonstrably drops modes' in reproduce.mode_dropping([20, 21, 22], 25, 2500)[1]
  assert 'does not demonstrably drop' in reproduce.mode_dropping([25, 24, 25], 25, 2500)[1]
  # 10 uniform draws over 25 modes cover about 8.4: 9 of 25 is no evidence of dropping
  assert 'does not demonstrably drop' in reproduce.mode_dropping([9, 9.5, 10], 25, 10)[1]
  assert reproduce.mode_dropping([20], 25, 2500) == []
