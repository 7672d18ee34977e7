//! Grouped, stratified, seeded validation split: all samples of a group (a plant) fall on one side.

use std::collections::BTreeMap;

/// SplitMix64: a small, stable generator, so splits stay the same across library upgrades.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Indices of (training, validation) samples. For each class, a `fraction` of its groups (at least
/// one, and never all) go to validation; a class with a single group stays in training. A group is
/// assigned by its most frequent class.
pub(crate) fn grouped_split(
    classes: &[usize],
    groups: &[u32],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    if fraction <= 0.0 {
        return ((0..classes.len()).collect(), Vec::new());
    }
    // Group -> class votes.
    let mut votes: BTreeMap<u32, BTreeMap<usize, usize>> = BTreeMap::new();
    for (&c, &g) in classes.iter().zip(groups) {
        *votes.entry(g).or_default().entry(c).or_default() += 1;
    }
    let mut groups_of_class: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for (g, v) in &votes {
        let class = v
            .iter()
            .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
            .map(|(c, _)| *c)
            .expect("a group has samples");
        groups_of_class.entry(class).or_default().push(*g);
    }
    let mut rng = SplitMix64::new(seed ^ 0x5EED_5011_7000_0001);
    let mut validation_groups = std::collections::BTreeSet::new();
    for class_groups in groups_of_class.values_mut() {
        if class_groups.len() < 2 {
            continue;
        }
        rng.shuffle(class_groups);
        let take = ((class_groups.len() as f64 * fraction).round() as usize)
            .clamp(1, class_groups.len() - 1);
        validation_groups.extend(class_groups[..take].iter().copied());
    }
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (i, g) in groups.iter().enumerate() {
        if validation_groups.contains(g) {
            validation.push(i);
        } else {
            train.push(i);
        }
    }
    (train, validation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_never_straddle_and_classes_are_stratified() {
        let classes: Vec<usize> = (0..300).map(|i| (i / 10) % 3).collect();
        let groups: Vec<u32> = (0..300).map(|i| i / 10).collect();
        let (train, validation) = grouped_split(&classes, &groups, 0.2, 7);
        assert_eq!(train.len() + validation.len(), 300);
        let train_groups: std::collections::BTreeSet<u32> =
            train.iter().map(|&i| groups[i]).collect();
        assert!(validation
            .iter()
            .all(|&i| !train_groups.contains(&groups[i])));
        for class in 0..3 {
            let n = validation.iter().filter(|&&i| classes[i] == class).count();
            assert_eq!(n, 20, "class {class}: 2 of its 10 groups");
        }
        assert_eq!(
            grouped_split(&classes, &groups, 0.2, 7),
            (train, validation),
            "seeded"
        );
    }
}
