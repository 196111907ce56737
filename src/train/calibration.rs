//! Calibration of a binary classifier's output: the expected calibration error, and the
//! temperature (Guo et al. 2017) that makes `sigmoid(logit / T)` a probability, fitted on a
//! validation split.

use crate::models::Calibration;

/// Expected calibration error of probabilities of the positive class over `bins` equal-width
/// bins of [0, 1]: `sum_b |b| / n * |fraction of positives in b - mean probability in b|`.
/// This is the reliability-diagram form for a binary output (scikit-learn's
/// `calibration_curve`): a quality of 0.3 should succeed 30 % of the time. 0 for no examples.
pub fn expected_calibration_error(probabilities: &[f32], labels: &[bool], bins: usize) -> f64 {
    assert_eq!(
        probabilities.len(),
        labels.len(),
        "one label per probability"
    );
    assert!(bins > 0, "at least one bin");
    let n = probabilities.len();
    if n == 0 {
        return 0.0;
    }
    // Per bin: count, sum of probabilities, positives.
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &label) in probabilities.iter().zip(labels) {
        let p = (p as f64).clamp(0.0, 1.0);
        // p = 1 belongs to the last bin.
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += label as usize;
    }
    sums.iter()
        .filter(|(count, _, _)| *count > 0)
        .map(|&(count, p_sum, positives)| {
            let count = count as f64;
            count / n as f64 * (positives as f64 / count - p_sum / count).abs()
        })
        .sum()
}

/// Mean negative log-likelihood of `labels` under `sigmoid(logit / temperature)`.
pub fn binary_nll(logits: &[f32], labels: &[bool], temperature: f64) -> f64 {
    // -log sigmoid(s z) = softplus(-s z), computed without overflow.
    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(&z, &label)| {
            let signed = if label { z as f64 } else { -(z as f64) };
            softplus(-signed / temperature)
        })
        .sum();
    total / logits.len().max(1) as f64
}

/// The temperatures `fit_temperature` searches: beyond them a network is not worth calibrating
/// (T -> 0 happens only on separable data, T -> inf on outputs that carry no information).
pub const TEMPERATURE_RANGE: (f64, f64) = (0.01, 100.0);

/// The temperature minimising `binary_nll` on (`logits`, `labels`): golden-section search on
/// ln T over `TEMPERATURE_RANGE`. The NLL is convex in 1/T, so unimodal in ln T and the search
/// cannot stop at a wrong local minimum. 1 for no examples.
pub fn fit_temperature(logits: &[f32], labels: &[bool]) -> f64 {
    assert_eq!(logits.len(), labels.len(), "one label per logit");
    if logits.is_empty() {
        return 1.0;
    }
    let nll = |log_t: f64| binary_nll(logits, labels, log_t.exp());
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln());
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let (mut fc, mut fd) = (nll(c), nll(d));
    // 60 steps shrink the 9.2-wide interval of ln T below 1e-11.
    for _ in 0..60 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - inv_phi * (b - a);
            fc = nll(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + inv_phi * (b - a);
            fd = nll(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// Fits a temperature on validation logits and records the validation ECE (10 bins) before
/// and after.
pub fn calibrate_temperature(logits: &[f32], labels: &[bool]) -> Calibration {
    let temperature = fit_temperature(logits, labels);
    let ece = |c: &Calibration| {
        let p: Vec<f32> = logits.iter().map(|&z| c.probability(z)).collect();
        expected_calibration_error(&p, labels, 10)
    };
    let fitted = Calibration::temperature(temperature);
    Calibration {
        validation_ece_before: Some(ece(&Calibration::temperature(1.0))),
        validation_ece_after: Some(ece(&fitted)),
        ..fitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn ece_by_hand() {
        // Bin [0.2, 0.3): probabilities 0.2, 0.2, 0.2, 0.2 with one positive: |0.25 - 0.2| = 0.05.
        // Bin [0.8, 0.9): 0.8, 0.8 with two positives: |1.0 - 0.8| = 0.2.
        // ECE = 4/6 * 0.05 + 2/6 * 0.2 = 0.1
        let p = [0.2, 0.2, 0.2, 0.2, 0.8, 0.8];
        let y = [true, false, false, false, true, true];
        let ece = expected_calibration_error(&p, &y, 10);
        assert!((ece - 0.1).abs() < 1e-6, "{ece}");
        // Two bins, mixed confidences inside a bin: [0, 0.5) holds 0.1, 0.3 (mean 0.2), one
        // positive (0.5): 0.3; [0.5, 1] holds 0.6, 1.0 (mean 0.8), both positive: 0.2.
        let ece = expected_calibration_error(&[0.1, 0.3, 0.6, 1.0], &[false, true, true, true], 2);
        assert!((ece - (0.5 * 0.3 + 0.5 * 0.2)).abs() < 1e-6, "{ece}");
        assert_eq!(expected_calibration_error(&[], &[], 10), 0.0);
        // Always right and certain: 0.
        assert_eq!(
            expected_calibration_error(&[0.0, 1.0], &[false, true], 10),
            0.0
        );
    }

    #[test]
    fn ece_of_perfectly_calibrated_data_is_near_zero() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut p, mut y) = (Vec::new(), Vec::new());
        for _ in 0..200_000 {
            let q: f32 = rng.gen();
            p.push(q);
            y.push(rng.gen::<f32>() < q);
        }
        let ece = expected_calibration_error(&p, &y, 10);
        assert!(ece < 0.01, "{ece}");
        // The same outcomes with over-confident probabilities are far from calibrated.
        let sharp: Vec<f32> = p.iter().map(|&q| if q > 0.5 { 1.0 } else { 0.0 }).collect();
        assert!(expected_calibration_error(&sharp, &y, 10) > 0.2);
    }

    /// Logits z with labels drawn from sigmoid(z / t_true).
    fn synthetic(t_true: f64, n: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let z: f64 = rng.gen_range(-12.0..12.0);
                let p = 1.0 / (1.0 + (-z / t_true).exp());
                (z as f32, rng.gen::<f64>() < p)
            })
            .unzip()
    }

    #[test]
    fn temperature_fit_recovers_a_known_temperature() {
        for t_true in [0.5, 1.0, 2.5] {
            let (z, y) = synthetic(t_true, 50_000, 11);
            let t = fit_temperature(&z, &y);
            assert!((t / t_true - 1.0).abs() < 0.05, "fitted {t} for {t_true}");
            // The fit is the minimum: its neighbours are no better.
            let at = binary_nll(&z, &y, t);
            assert!(at <= binary_nll(&z, &y, t * 1.02) && at <= binary_nll(&z, &y, t / 1.02));
        }
    }

    #[test]
    fn calibrating_over_confident_logits_lowers_the_ece() {
        let (z, y) = synthetic(2.5, 50_000, 12);
        let c = calibrate_temperature(&z, &y);
        let (before, after) = (
            c.validation_ece_before.unwrap(),
            c.validation_ece_after.unwrap(),
        );
        assert!(before > 0.05 && after < 0.01, "ECE {before} -> {after}");
        assert!((c.temperature - 2.5).abs() < 0.125, "{}", c.temperature);
    }

    #[test]
    fn temperature_fit_stays_in_range_on_degenerate_data() {
        assert_eq!(fit_temperature(&[], &[]), 1.0);
        // Separable: the NLL falls as T -> 0, the fit stops at the range's end.
        let t = fit_temperature(&[-3.0, -1.0, 1.0, 3.0], &[false, false, true, true]);
        assert!((t / TEMPERATURE_RANGE.0 - 1.0).abs() < 1e-3, "{t}");
        // Uninformative: labels independent of the sign, T grows to the other end.
        let t = fit_temperature(&[-3.0, 3.0, -3.0, 3.0], &[true, true, false, false]);
        assert!((t / TEMPERATURE_RANGE.1 - 1.0).abs() < 1e-3, "{t}");
    }
}
