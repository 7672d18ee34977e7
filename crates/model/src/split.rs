//! Grouped, stratified, seeded validation split: all samples of a group (a plant) fall on one side.

use std::collections::BTreeMap;

/// SplitMix64: a small, stable generator, so splits stay the same across library upgrades.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Indices of (training, validation) samples. For each class, a `fraction` of its groups (at least
/// one, and never all) go to validation; a class with a single group stays in training. A group is
/// assigned by its most frequent class.
pub fn grouped_split(
    classes: &[usize],
    groups: &[u32],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    if fraction <= 0.0 {
        return ((0..classes.len()).collect(), Vec::new());
    }
    let mut groups_of_class = group_classes(classes, groups);
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

/// Majority class of each group, in group order.
fn group_classes(classes: &[usize], groups: &[u32]) -> BTreeMap<usize, Vec<u32>> {
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
    groups_of_class
}

/// The fewest groups any class has (groups counted by their majority class).
pub fn fewest_groups_per_class(classes: &[usize], groups: &[u32]) -> (usize, usize) {
    group_classes(classes, groups)
        .iter()
        .map(|(&c, g)| (g.len(), c))
        .min()
        .unwrap_or((0, 0))
}

/// Fold (0..k) of each sample for grouped, stratified k-fold cross-validation: each class's groups
/// are shuffled and dealt to the folds in turn (the dealing continues from class to class, so fold
/// sizes stay within one group of each other), and all samples of a group share its fold.
pub fn grouped_folds(classes: &[usize], groups: &[u32], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ 0x5EED_F01D_0000_0002);
    let mut fold_of_group: BTreeMap<u32, usize> = BTreeMap::new();
    let mut next = 0usize;
    for mut class_groups in group_classes(classes, groups).into_values() {
        rng.shuffle(&mut class_groups);
        for g in class_groups {
            fold_of_group.insert(g, next % k);
            next += 1;
        }
    }
    groups.iter().map(|g| fold_of_group[g]).collect()
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

    #[test]
    fn folds_keep_groups_together_and_stratify() {
        // 3 classes, 10 groups each of 1..=4 samples.
        let (mut classes, mut groups) = (Vec::new(), Vec::new());
        for g in 0..30u32 {
            for _ in 0..(1 + g % 4) {
                classes.push((g % 3) as usize);
                groups.push(g);
            }
        }
        let folds = grouped_folds(&classes, &groups, 5, 3);
        let mut fold_of = BTreeMap::new();
        for (&g, &f) in groups.iter().zip(&folds) {
            assert_eq!(
                *fold_of.entry(g).or_insert(f),
                f,
                "group {g} straddles folds"
            );
        }
        for class in 0..3 {
            for fold in 0..5 {
                let n = fold_of
                    .iter()
                    .filter(|(g, f)| **f == fold && (**g % 3) as usize == class)
                    .count();
                assert_eq!(n, 2, "class {class} fold {fold}: 2 of its 10 groups");
            }
        }
        assert_eq!(grouped_folds(&classes, &groups, 5, 3), folds, "seeded");
        assert_eq!(fewest_groups_per_class(&classes, &groups), (10, 0));
    }
}
