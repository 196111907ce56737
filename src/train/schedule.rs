//! Learning-rate schedules (constant, step, exponential) as functions of the iteration.

use serde::{Deserialize, Serialize};

/// Learning rate as a function of the iteration `t` (0-based), as the course defines them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Multiply by `factor` every `every` iterations: `lr0 * factor^floor(t / every)`.
    Step {
        factor: f64,
        every: u64,
    },
    /// `lr0 * exp(-beta * t)`.
    Exponential {
        beta: f64,
    },
}

impl Schedule {
    pub fn learning_rate(&self, lr0: f64, t: u64) -> f64 {
        match *self {
            Self::Constant => lr0,
            Self::Step { factor, every } => lr0 * factor.powi((t / every.max(1)) as i32),
            Self::Exponential { beta } => lr0 * (-beta * t as f64).exp(),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        match *self {
            Self::Step { factor, every } if !(factor > 0.0 && factor <= 1.0) || every == 0 => {
                Err(format!(
                    "step schedule needs 0 < factor <= 1 and every >= 1, got {factor}, {every}"
                ))
            }
            Self::Exponential { beta } if !(beta >= 0.0) => {
                Err(format!("exponential schedule needs beta >= 0, got {beta}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        assert_eq!(Schedule::Constant.learning_rate(0.1, 1000), 0.1);
        let step = Schedule::Step {
            factor: 0.5,
            every: 10,
        };
        assert_eq!(step.learning_rate(0.1, 9), 0.1);
        assert_eq!(step.learning_rate(0.1, 10), 0.05);
        assert_eq!(step.learning_rate(0.1, 25), 0.025);
        let exp = Schedule::Exponential { beta: 0.01 };
        assert!((exp.learning_rate(0.1, 100) - 0.1 * (-1.0f64).exp()).abs() < 1e-15);
        assert!(Schedule::Step {
            factor: 2.0,
            every: 1
        }
        .check()
        .is_err());
    }
}
