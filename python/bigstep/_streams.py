"""Every Philox stream bigstep draws from: one number, one use.

Draws are element i of the counter-based stream (seed, stream) (bigstep.gaussian_noise,
bigstep.uniform), so each result can be replayed outside the kernels from this table.
The compiled kernels use the same numbers, mirrored in csrc/include/bigstep/streams.hpp
(tests/test_streams.py checks the two agree and that no number has two uses).  A new use
gets a new number here and there; never write a bare stream number anywhere else.
"""

from __future__ import annotations

#: reverse sampler: initial state X_0[p, j] = gaussian_noise(seed, (n_samples, dim), SAMPLER_INITIAL)[p, j]
SAMPLER_INITIAL = 0
#: reverse sampler: increment Z_k[p, j] = gaussian_noise(seed, (n_steps, n_samples, dim), SAMPLER_STEPS)[k, p, j]
SAMPLER_STEPS = 1
#: network initialisation (every trainer and bigstep.ReLUNet1D.init)
NETWORK_INIT = 2
#: SGD data index of step j, batch slot b: floor(n uniform(seed, (steps, B), SGD_INDEX)[j, b])
SGD_INDEX = 3
#: SGD noise of the same draw: gaussian_noise(seed, (steps, B, d), SGD_NOISE)[j, b, :]
SGD_NOISE = 4
#: forward noising (bigstep.sample_forward)
FORWARD_NOISE = 5
#: diffusion trainer: the time index of each draw (inverse cdf of a uniform)
DIFFUSION_TIME = 6
#: Monte Carlo excess risk of d-D networks (excess_risk_mc)
EXCESS_RISK_MC = 7
#: the reproductions' training sets
REPRO_DATA = 8
#: the reproductions' samples of the fitted Gaussian
REPRO_GAUSSIAN_SAMPLES = 9
#: random features: weights W (p, d)
RF_WEIGHTS = 10
#: random features: the noise xi of the n n_noise training samples
RF_NOISE = 11
#: random features: Gaussian training data of the learning curves
RF_DATA = 12
#: random features: Monte Carlo test samples
RF_MC = 13
#: the fixed noise sample of the Monte Carlo sharpness (sharpness_mc, diffusion_sharpness_mc)
SHARPNESS_MC = 14
#: sweeps' memorization task: fresh samples of the data law (the MMD reference)
SWEEP_FRESH = 15

#: name -> number, for tests and the docs' stream map
ALL = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, int)}
