//! Ridge regression in closed form on standardised features with an unpenalised intercept,
//! optionally shrunk towards prior coefficients: β = (ZᵀZ + Λ)⁻¹ (Zᵀy + Λ β₀).
//!
//! Fits work from [`Gram`] sums (Σ x̃x̃ᵀ and Σ x̃y over rows, x̃ = [1, x]), which add and
//! subtract: leave-one-person-out and forward-fold fits then cost one small solve each
//! instead of a pass over the rows.

/// Sufficient statistics of a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    p: usize,
    xtx: Vec<f64>,
    xty: Vec<f64>,
}

impl Gram {
    pub fn new(features: usize) -> Gram {
        let p = features + 1;
        Gram {
            p,
            xtx: vec![0.0; p * p],
            xty: vec![0.0; p],
        }
    }

    pub fn rows(&self) -> f64 {
        self.xtx[0]
    }

    pub fn add(&mut self, row: &[f64], y: f64) {
        let p = self.p;
        let x = |i: usize| if i == 0 { 1.0 } else { row[i - 1] };
        for i in 0..p {
            let xi = x(i);
            self.xty[i] += xi * y;
            let r = &mut self.xtx[i * p..(i + 1) * p];
            for (j, slot) in r.iter_mut().enumerate().skip(i) {
                *slot += xi * x(j);
            }
        }
    }

    pub fn merge(&mut self, other: &Gram) {
        self.xtx
            .iter_mut()
            .zip(&other.xtx)
            .for_each(|(a, b)| *a += b);
        self.xty
            .iter_mut()
            .zip(&other.xty)
            .for_each(|(a, b)| *a += b);
    }

    pub fn minus(&self, other: &Gram) -> Gram {
        let mut g = self.clone();
        g.xtx.iter_mut().zip(&other.xtx).for_each(|(a, b)| *a -= b);
        g.xty.iter_mut().zip(&other.xty).for_each(|(a, b)| *a -= b);
        g
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        let (i, j) = if i <= j { (i, j) } else { (j, i) };
        self.xtx[i * self.p + j]
    }

    /// Mean and population SD of each feature (an SD of 0 becomes 1).
    pub fn standardisation(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.rows().max(1.0);
        let mean: Vec<f64> = (1..self.p).map(|j| self.at(0, j) / n).collect();
        let sd = (1..self.p)
            .map(|j| {
                let var = self.at(j, j) / n - mean[j - 1].powi(2);
                let sd = var.max(0.0).sqrt();
                if sd > 1e-9 {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        (mean, sd)
    }

    /// Fits β (intercept first) in the standardisation given. With no rows, the prior (or
    /// zeros) is returned.
    pub fn fit(&self, mean: &[f64], sd: &[f64], lambda: f64, prior: Option<&[f64]>) -> Vec<f64> {
        let p = self.p;
        if self.rows() < 1.0 {
            return prior.map(<[f64]>::to_vec).unwrap_or_else(|| vec![0.0; p]);
        }
        // z = T x̃ with z₀ = 1 and z_j = (x_j − μ_j)/σ_j: ZᵀZ = T G Tᵀ, Zᵀy = T g. Row i of
        // T has entries in columns 0 and i only.
        let row_t = |i: usize| -> [(usize, f64); 2] {
            if i == 0 {
                [(0, 1.0), (0, 0.0)]
            } else {
                [(0, -mean[i - 1] / sd[i - 1]), (i, 1.0 / sd[i - 1])]
            }
        };
        let mut a = vec![0.0; p * p];
        for i in 0..p {
            for j in i..p {
                let mut s = 0.0;
                for (k, tik) in row_t(i) {
                    for (l, tjl) in row_t(j) {
                        s += tik * self.at(k, l) * tjl;
                    }
                }
                a[i * p + j] = s;
                a[j * p + i] = s;
            }
        }
        let mut b: Vec<f64> = (0..p)
            .map(|i| row_t(i).iter().map(|&(k, t)| t * self.xty[k]).sum())
            .collect();
        for i in 1..p {
            a[i * p + i] += lambda;
            if let Some(prior) = prior {
                b[i] += lambda * prior[i];
            }
        }
        solve_spd(&mut a, &mut b, p).unwrap_or_else(|| vec![0.0; p])
    }
}

/// Solves A x = b for a symmetric positive definite A by Cholesky decomposition.
fn solve_spd(a: &mut [f64], b: &mut [f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d.is_nan() || d <= 1e-12 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Some(b.to_vec())
}

pub fn predict(beta: &[f64], mean: &[f64], sd: &[f64], row: &[f64]) -> f64 {
    let mut v = beta[0];
    for j in 0..mean.len() {
        v += beta[j + 1] * (row[j] - mean[j]) / sd[j];
    }
    v
}

/// β folded into the standardisation: `[w₀, w₁, …]` with w_j = β_j / σ_j and
/// w₀ = β₀ − Σ β_j μ_j / σ_j, so that w₀ + [`dot`]`(w₁…, x)` is [`predict`]'s value (up to
/// rounding) with one multiply-add per feature.
pub fn fold(beta: &[f64], mean: &[f64], sd: &[f64]) -> Vec<f64> {
    let mut w = Vec::with_capacity(beta.len());
    w.push(beta[0]);
    for j in 0..mean.len() {
        let wj = beta[j + 1] / sd[j];
        w[0] -= wj * mean[j];
        w.push(wj);
    }
    w
}

/// Σ w_j x_j, in four independent sums. The lengths are constants, so the compiler unrolls
/// the loop and keeps the sums in vector registers.
pub fn dot<const N: usize>(w: &[f64; N], x: &[f64; N]) -> f64 {
    let mut sums = [0.0; 4];
    let (wc, xc) = (w.chunks_exact(4), x.chunks_exact(4));
    let tail: f64 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (wc, xc) in wc.zip(xc) {
        for i in 0..4 {
            sums[i] += wc[i] * xc[i];
        }
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_linear_relation_and_shrinks_towards_the_prior() {
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|i| vec![i as f64, ((i * 37) % 23) as f64])
            .collect();
        let mut g = Gram::new(2);
        for r in &rows {
            g.add(r, 3.0 + 2.0 * r[0] - 0.5 * r[1]);
        }
        let (mean, sd) = g.standardisation();
        assert!((mean[0] - 99.5).abs() < 1e-9);
        let beta = g.fit(&mean, &sd, 1e-9, None);
        for r in &rows {
            let expected = 3.0 + 2.0 * r[0] - 0.5 * r[1];
            assert!((predict(&beta, &mean, &sd, r) - expected).abs() < 1e-6);
        }
        // An enormous penalty returns the prior's slopes (the intercept stays free).
        let prior = [0.0, 1.0, 1.0];
        let shrunk = g.fit(&mean, &sd, 1e12, Some(&prior));
        assert!((shrunk[1] - 1.0).abs() < 1e-3 && (shrunk[2] - 1.0).abs() < 1e-3);
        // Sums subtract: the first half's fit from the whole minus the second half.
        let (mut first, mut second) = (Gram::new(2), Gram::new(2));
        for (i, r) in rows.iter().enumerate() {
            let y = 3.0 + 2.0 * r[0] - 0.5 * r[1];
            if i < 100 {
                first.add(r, y)
            } else {
                second.add(r, y)
            }
        }
        let a = first.fit(&mean, &sd, 1.0, None);
        let b = g.minus(&second).fit(&mean, &sd, 1.0, None);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    }

    #[test]
    fn folded_coefficients_predict_the_same() {
        let (mean, sd) = (
            [1.0, -2.0, 3.5, 0.0, 10.0, 7.0],
            [2.0, 0.5, 1.0, 3.0, 4.0, 1.5],
        );
        let beta = [0.3, 1.0, -2.0, 0.25, 4.0, -0.5, 0.125];
        let w = fold(&beta, &mean, &sd);
        for row in [
            [0.0; 6],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            [-7.5, 0.1, 100.0, -3.0, 2.5, 1e3],
        ] {
            let weights: &[f64; 6] = w[1..].try_into().expect("six weights");
            let (a, b) = (predict(&beta, &mean, &sd, &row), w[0] + dot(weights, &row));
            assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}
