//! Statistics for tests of sampling: Pearson's chi-square test of homogeneity and its
//! p-value (the regularized upper incomplete gamma function).

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms: about 15 digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut a = C[0];
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Q(a, x) = Γ(a, x) / Γ(a): the series below a + 1, Lentz's continued fraction above.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * front
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        front * h
    }
}

/// P(χ² ≥ statistic) with `df` degrees of freedom.
pub fn chi_square_p_value(statistic: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, statistic / 2.0)
}

/// Pearson's chi-square test that two samples of categories (counts per category) come
/// from one distribution. Categories expected fewer than 5 times in either sample are
/// pooled into one. Returns (statistic, degrees of freedom, p-value).
pub fn homogeneity(a: &[u64], b: &[u64]) -> (f64, usize, f64) {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let n = na + nb;
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let mut pooled = (0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let total = (x + y) as f64;
        if total * na.min(nb) / n < 5.0 {
            pooled.0 += x as f64;
            pooled.1 += y as f64;
        } else {
            cells.push((x as f64, y as f64));
        }
    }
    if pooled.0 + pooled.1 > 0.0 {
        cells.push(pooled);
    }
    let statistic: f64 = cells
        .iter()
        .map(|&(x, y)| {
            let total = x + y;
            let (ex, ey) = (total * na / n, total * nb / n);
            (x - ex).powi(2) / ex + (y - ey).powi(2) / ey
        })
        .sum();
    let df = cells.len().saturating_sub(1).max(1);
    (statistic, df, chi_square_p_value(statistic, df))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_match_tables() {
        // Critical values at 0.05 and 0.01 from standard tables.
        assert!((chi_square_p_value(3.841, 1) - 0.05).abs() < 1e-3);
        assert!((chi_square_p_value(18.307, 10) - 0.05).abs() < 1e-3);
        assert!((chi_square_p_value(23.209, 10) - 0.01).abs() < 1e-3);
        assert!((chi_square_p_value(63.691, 40) - 0.01).abs() < 1e-3);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn homogeneity_separates_same_from_different() {
        let (_, _, p) = homogeneity(&[100, 200, 300], &[105, 195, 300]);
        assert!(p > 0.5, "{p}");
        let (_, _, p) = homogeneity(&[100, 200, 300], &[200, 200, 200]);
        assert!(p < 1e-6, "{p}");
    }
}
