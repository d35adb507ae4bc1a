//! Differences between paired measurements: mean, standard error, range, a one-sided 95 %
//! upper bound, and a verdict against a limit that says when a run could not resolve it.

use serde_json::{Value, json};

/// Per-round differences (µs per call): their mean, standard error and range.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    pub n: usize,
    pub mean: f64,
    pub se: f64,
    pub min: f64,
    pub max: f64,
}

impl Diff {
    pub fn of(values: &[f64]) -> Option<Diff> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            f64::NAN
        };
        Some(Diff {
            n,
            mean,
            se: (var / n as f64).sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    pub fn show(&self) -> String {
        format!(
            "{:+.1} ± {:.1} ({:+.0} … {:+.0})",
            self.mean, self.se, self.min, self.max
        )
    }

    /// One-sided 95 % upper bound of the mean (Student's t, n − 1 degrees of freedom).
    pub fn upper(&self) -> f64 {
        const T95: [f64; 20] = [
            6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782,
            1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
        ];
        match self.n {
            0 | 1 => f64::NAN,
            n => self.mean + T95.get(n - 2).copied().unwrap_or(1.725) * self.se,
        }
    }

    pub fn json(&self) -> Value {
        json!({"rounds": self.n, "mean_us": self.mean, "standard_error_us": self.se,
            "min_us": self.min, "max_us": self.max, "upper_95_us": self.upper()})
    }
}

/// "met" when the 95 % upper bound of every difference is within the limit; "met in the
/// mean" when only the means are (the run could not resolve the limit); else "missed".
pub fn judge(diffs: &[Option<Diff>], clean: bool, limit: f64) -> &'static str {
    let all =
        |ok: &dyn Fn(&Diff) -> bool| clean && diffs.iter().all(|d| d.as_ref().is_some_and(ok));
    if all(&|d| d.upper() <= limit) {
        "met"
    } else if all(&|d| d.mean <= limit) {
        "met in the mean"
    } else {
        "missed"
    }
}

pub fn shown(verdict: &str) -> &'static str {
    match verdict {
        "met" => "**met**",
        "met in the mean" => "**met in the mean**; not resolved (95 % upper bound above the limit)",
        _ => "**MISSED**",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_says_when_the_spread_hides_the_limit() {
        let d = Diff::of;
        let five = d(&[20.0, 22.0, 18.0, 21.0, 19.0]).unwrap();
        assert_eq!((five.mean, five.min, five.max), (20.0, 18.0, 22.0));
        // s.e. = √(10 / 4 / 5) ≈ 0.707; t(4) = 2.132.
        assert!((five.upper() - (20.0 + 2.132 * 0.5f64.sqrt())).abs() < 1e-9);
        assert_eq!(judge(&[Some(five)], true, 50.0), "met");
        assert_eq!(judge(&[Some(five)], false, 50.0), "missed");
        assert_eq!(judge(&[d(&[-40.0, 90.0])], true, 50.0), "met in the mean");
        assert_eq!(judge(&[Some(five), d(&[45.0, 60.0])], true, 50.0), "missed");
        assert_eq!(judge(&[None], true, 50.0), "missed");
        assert!(d(&[]).is_none() && d(&[3.0]).unwrap().upper().is_nan());
    }
}
