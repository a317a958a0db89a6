//! The numerics: a seeded generator, the synthetic regression problem, the gradient, the
//! fixed-order reduction and SGD with momentum.
//!
//! Everything here is pure and uses only `+ - * /` on `f64` (no `ln`, `sin`, fused
//! multiply-add or anything a platform's maths library might round differently), so a step's
//! result depends only on its inputs, bit for bit.

/// SplitMix64: a tiny, well-mixed 64-bit generator. Deterministic and platform independent.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Approximately standard normal (Irwin–Hall: the sum of 12 uniforms, minus 6). Pure
    /// arithmetic, so bit-identical everywhere.
    pub fn next_gaussian(&mut self) -> f64 {
        let mut sum = 0.0;
        for _ in 0..12 {
            sum += self.next_f64();
        }
        sum - 6.0
    }
}

/// The seed of the data stream of one rank at one step: a function of `(seed, step, rank)` only,
/// so a step's data is the same whether or not the run was interrupted before it.
pub fn stream_seed(seed: u64, step: u64, rank: u64) -> u64 {
    let a = SplitMix64::new(seed).next_u64() ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = SplitMix64::new(a).next_u64() ^ rank.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    SplitMix64::new(b).next_u64()
}

/// A synthetic linear-regression problem: `y = w* . x + noise * e`, `x, e ~ N(0, 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Number of features (and weights).
    pub dim: usize,
    /// Examples per rank per step.
    pub batch: usize,
    /// Standard deviation of the label noise.
    pub noise: f64,
    /// The weights the data was generated with.
    pub true_weights: Vec<f64>,
}

impl Problem {
    /// The problem for `seed`: the true weights come from their own stream of the seed.
    pub fn new(seed: u64, dim: usize, batch: usize, noise: f64) -> Self {
        let mut rng = SplitMix64::new(stream_seed(seed, u64::MAX, u64::MAX));
        let true_weights = (0..dim).map(|_| rng.next_gaussian()).collect();
        Self {
            dim,
            batch,
            noise,
            true_weights,
        }
    }

    /// The mean-squared-error gradient and loss of `weights` on the batch of `rank` at `step`.
    /// Returns `dim + 1` numbers: the gradient, then the loss (so one all-reduce carries both).
    pub fn local_gradient(&self, weights: &[f64], seed: u64, step: u64, rank: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(stream_seed(seed, step, rank));
        let mut out = vec![0.0; self.dim + 1];
        let mut x = vec![0.0; self.dim];
        for _ in 0..self.batch {
            for xi in x.iter_mut() {
                *xi = rng.next_gaussian();
            }
            let y = dot(&self.true_weights, &x) + self.noise * rng.next_gaussian();
            let err = dot(weights, &x) - y;
            for (g, xi) in out.iter_mut().zip(&x) {
                *g += 2.0 * err * xi;
            }
            out[self.dim] += err * err;
        }
        let n = self.batch as f64;
        for g in out.iter_mut() {
            *g /= n;
        }
        out
    }
}

/// `a . b`, summed left to right.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// The element-wise mean of `parts`, summed in the order given (rank 0 first), whatever order
/// they arrived in. The same inputs always give the same bits.
///
/// # Panics
/// If `parts` is empty or the parts differ in length.
pub fn reduce_mean(parts: &[Vec<f64>]) -> Vec<f64> {
    assert!(!parts.is_empty(), "reduce_mean needs at least one part");
    let len = parts[0].len();
    let mut sum = vec![0.0; len];
    for part in parts {
        assert_eq!(part.len(), len, "all-reduce parts differ in length");
        for (s, x) in sum.iter_mut().zip(part) {
            *s += x;
        }
    }
    let n = parts.len() as f64;
    for s in sum.iter_mut() {
        *s /= n;
    }
    sum
}

/// SGD with (heavy-ball) momentum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum coefficient (0 for plain SGD).
    pub momentum: f64,
}

impl Sgd {
    /// One update: `v = momentum * v + g; w = w - lr * v`.
    pub fn apply(&self, weights: &mut [f64], velocity: &mut [f64], grad: &[f64]) {
        for ((w, v), g) in weights.iter_mut().zip(velocity.iter_mut()).zip(grad) {
            *v = self.momentum * *v + g;
            *w -= self.lr * *v;
        }
    }
}

/// FNV-1a over the little-endian bits of `values`: a short fingerprint of a model that changes
/// when any bit does.
pub fn fingerprint(values: &[f64]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_uniform_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x.to_bits(), b.next_f64().to_bits());
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn gaussian_has_roughly_zero_mean_unit_variance() {
        let mut rng = SplitMix64::new(1);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.next_gaussian()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn streams_differ_by_step_and_rank() {
        let s = stream_seed(42, 3, 1);
        assert_eq!(s, stream_seed(42, 3, 1));
        assert_ne!(s, stream_seed(42, 4, 1));
        assert_ne!(s, stream_seed(42, 3, 2));
        assert_ne!(s, stream_seed(43, 3, 1));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let p = Problem::new(5, 4, 16, 0.1);
        let w = vec![0.3, -0.2, 0.5, 0.1];
        let g = p.local_gradient(&w, 5, 0, 0);
        let loss = |w: &[f64]| p.local_gradient(w, 5, 0, 0)[4];
        let h = 1e-6;
        for i in 0..4 {
            let mut up = w.clone();
            up[i] += h;
            let mut down = w.clone();
            down[i] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!(
                (numeric - g[i]).abs() < 1e-5,
                "d/dw{i}: {numeric} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn gradient_is_zero_at_the_true_weights_without_noise() {
        let p = Problem::new(9, 6, 8, 0.0);
        let g = p.local_gradient(&p.true_weights, 9, 11, 2);
        assert!(g.iter().all(|x| x.abs() < 1e-12), "{g:?}");
    }

    #[test]
    fn reduce_mean_is_elementwise_mean_in_rank_order() {
        let parts = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 9.0]];
        assert_eq!(reduce_mean(&parts), vec![3.0, 5.0]);
        // Summation order is fixed: the result is a function of the slice, not of arrival.
        let tricky = vec![vec![1e16], vec![1.0], vec![-1e16]];
        let expected: f64 = ((1e16 + 1.0) + -1e16) / 3.0;
        assert_eq!(reduce_mean(&tricky)[0].to_bits(), expected.to_bits());
    }

    #[test]
    fn sgd_with_momentum_updates_as_written() {
        let sgd = Sgd {
            lr: 0.5,
            momentum: 0.9,
        };
        let mut w = vec![1.0];
        let mut v = vec![2.0];
        sgd.apply(&mut w, &mut v, &[1.0]);
        assert_eq!(v, vec![2.8]);
        assert_eq!(w, vec![1.0 - 0.5 * 2.8]);
    }

    #[test]
    fn training_converges_to_the_true_weights() {
        let p = Problem::new(3, 8, 32, 0.01);
        let sgd = Sgd {
            lr: 0.05,
            momentum: 0.9,
        };
        let mut w = vec![0.0; 8];
        let mut v = vec![0.0; 8];
        for step in 0..300 {
            let parts: Vec<Vec<f64>> = (0..4).map(|r| p.local_gradient(&w, 3, step, r)).collect();
            let g = reduce_mean(&parts);
            sgd.apply(&mut w, &mut v, &g[..8]);
        }
        for (a, b) in w.iter().zip(&p.true_weights) {
            assert!((a - b).abs() < 0.01, "{w:?} vs {:?}", p.true_weights);
        }
    }

    #[test]
    fn fingerprint_sees_every_bit() {
        let a = fingerprint(&[1.0, 2.0]);
        assert_eq!(a, fingerprint(&[1.0, 2.0]));
        assert_ne!(a, fingerprint(&[1.0, f64::from_bits(2.0f64.to_bits() ^ 1)]));
        assert_ne!(a, fingerprint(&[2.0, 1.0]));
    }
}
