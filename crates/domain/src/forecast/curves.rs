//! Activity curves of insulin and carbohydrates.

/// The fraction of a rapid-acting insulin dose still on board `t` minutes after it: oref0's
/// (and Loop's) exponential model with duration `td` and peak activity at `tp` minutes.
pub fn insulin_on_board(t: f64, td: f64, tp: f64) -> f64 {
    if t <= 0.0 {
        return 1.0;
    }
    if t >= td {
        return 0.0;
    }
    let tau = tp * (1.0 - tp / td) / (1.0 - 2.0 * tp / td);
    let a = 2.0 * tau / td;
    let s = 1.0 / (1.0 - a + (1.0 + a) * (-td / tau).exp());
    1.0 - s
        * (1.0 - a)
        * ((t * t / (tau * td * (1.0 - a)) - t / tau - 1.0) * (-t / tau).exp() + 1.0)
}

/// The fraction of a meal's carbohydrates not yet absorbed `t` minutes after it, for
/// gamma(k = 2) absorption peaking at `tp` minutes (the meal model of Hovorka et al. 2004).
pub fn carbs_unabsorbed(t: f64, tp: f64) -> f64 {
    let t = t.max(0.0);
    (1.0 + t / tp) * (-t / tp).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insulin_decays_from_all_to_nothing_fastest_at_its_peak() {
        assert_eq!(insulin_on_board(0.0, 360.0, 75.0), 1.0);
        assert_eq!(insulin_on_board(360.0, 360.0, 75.0), 0.0);
        assert!(insulin_on_board(359.0, 360.0, 75.0) < 0.001);
        let activity =
            |t: f64| insulin_on_board(t, 360.0, 75.0) - insulin_on_board(t + 1.0, 360.0, 75.0);
        let peak = (0..360).max_by(|a, b| activity(*a as f64).total_cmp(&activity(*b as f64)));
        assert!(peak.is_some_and(|p| (72..=76).contains(&p)), "{peak:?}");
        let iob: Vec<f64> = (0..=360)
            .map(|t| insulin_on_board(t as f64, 360.0, 75.0))
            .collect();
        assert!(iob.windows(2).all(|w| w[1] <= w[0]), "never rises");
    }

    #[test]
    fn carbs_are_absorbed_fastest_at_their_peak() {
        assert_eq!(carbs_unabsorbed(0.0, 25.0), 1.0);
        assert!(carbs_unabsorbed(300.0, 25.0) < 0.001);
        let rate = |t: f64| carbs_unabsorbed(t, 25.0) - carbs_unabsorbed(t + 1.0, 25.0);
        let peak = (0..200).max_by(|a, b| rate(*a as f64).total_cmp(&rate(*b as f64)));
        assert!(peak.is_some_and(|p| (24..=25).contains(&p)), "{peak:?}");
    }
}
