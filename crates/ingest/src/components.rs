//! 8-connected component labelling over a whole-scene key raster (one value per pixel, so a
//! small fraction of the cube's size), two-pass with union-find.

/// Regions of equal non-zero key, 8-connected. Region ids are 1-based in order of each region's
/// first pixel (row-major); 0 is background.
#[derive(Debug, Clone)]
pub struct Components {
    pub region_of_pixel: Vec<u32>,
    pub region_count: usize,
    /// Pixel count per region (index = id - 1).
    pub sizes: Vec<u64>,
    /// Key of each region (index = id - 1).
    pub keys: Vec<u32>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let grandparent = parent[parent[x as usize] as usize];
        parent[x as usize] = grandparent;
        x = grandparent;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[high as usize] = low;
    }
}

/// Label `keys` (`lines x samples`, row-major) into 8-connected regions of equal non-zero key.
pub fn label_components(keys: &[u32], lines: usize, samples: usize) -> Components {
    assert_eq!(
        keys.len(),
        lines * samples,
        "key raster has the scene's size"
    );
    let mut provisional = vec![0u32; keys.len()];
    // parent[0] is unused (background).
    let mut parent: Vec<u32> = vec![0];
    for row in 0..lines {
        for col in 0..samples {
            let i = row * samples + col;
            let key = keys[i];
            if key == 0 {
                continue;
            }
            // Already-visited neighbours: W, NW, N, NE.
            let mut neighbours = [0u32; 4];
            let mut n = 0;
            if col > 0 && keys[i - 1] == key {
                neighbours[n] = provisional[i - 1];
                n += 1;
            }
            if row > 0 {
                let up = i - samples;
                if col > 0 && keys[up - 1] == key {
                    neighbours[n] = provisional[up - 1];
                    n += 1;
                }
                if keys[up] == key {
                    neighbours[n] = provisional[up];
                    n += 1;
                }
                if col + 1 < samples && keys[up + 1] == key {
                    neighbours[n] = provisional[up + 1];
                    n += 1;
                }
            }
            if n == 0 {
                let label = parent.len() as u32;
                parent.push(label);
                provisional[i] = label;
            } else {
                let first = neighbours[0];
                provisional[i] = first;
                for &other in &neighbours[1..n] {
                    union(&mut parent, first, other);
                }
            }
        }
    }
    // Final ids in order of first pixel.
    let mut final_id = vec![0u32; parent.len()];
    let mut sizes = Vec::new();
    let mut region_keys = Vec::new();
    for i in 0..provisional.len() {
        let label = provisional[i];
        if label == 0 {
            continue;
        }
        let root = find(&mut parent, label);
        if final_id[root as usize] == 0 {
            sizes.push(0);
            region_keys.push(keys[i]);
            final_id[root as usize] = sizes.len() as u32;
        }
        let id = final_id[root as usize];
        provisional[i] = id;
        sizes[id as usize - 1] += 1;
    }
    Components {
        region_of_pixel: provisional,
        region_count: sizes.len(),
        sizes,
        keys: region_keys,
    }
}

impl Components {
    /// Drop regions outside `min_area..=max_area` pixels and renumber the rest 1.. in the same order.
    pub fn filter_by_area(mut self, min_area: u64, max_area: u64) -> Self {
        let mut remap = vec![0u32; self.region_count + 1];
        let mut sizes = Vec::new();
        let mut keys = Vec::new();
        for (index, &size) in self.sizes.iter().enumerate() {
            if (min_area..=max_area).contains(&size) {
                sizes.push(size);
                keys.push(self.keys[index]);
                remap[index + 1] = sizes.len() as u32;
            }
        }
        for region in &mut self.region_of_pixel {
            *region = remap[*region as usize];
        }
        self.region_count = sizes.len();
        self.sizes = sizes;
        self.keys = keys;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent check: flood fill with an explicit stack.
    fn flood_fill_count(keys: &[u32], lines: usize, samples: usize) -> Vec<u64> {
        let mut seen = vec![false; keys.len()];
        let mut sizes = Vec::new();
        for start in 0..keys.len() {
            if keys[start] == 0 || seen[start] {
                continue;
            }
            let mut stack = vec![start];
            seen[start] = true;
            let mut size = 0;
            while let Some(i) = stack.pop() {
                size += 1;
                let (r, c) = ((i / samples) as i64, (i % samples) as i64);
                for dr in -1..=1 {
                    for dc in -1..=1 {
                        let (nr, nc) = (r + dr, c + dc);
                        if nr < 0 || nc < 0 || nr >= lines as i64 || nc >= samples as i64 {
                            continue;
                        }
                        let j = nr as usize * samples + nc as usize;
                        if !seen[j] && keys[j] == keys[i] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            sizes.push(size);
        }
        sizes
    }

    #[test]
    fn matches_flood_fill_on_random_rasters() {
        let mut state = 12345u64;
        for trial in 0..200 {
            let (lines, samples) = (1 + trial % 17, 1 + (trial * 7) % 23);
            let keys: Vec<u32> = (0..lines * samples)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = (state >> 33) % 10;
                    if r < 5 {
                        0
                    } else {
                        (r % 3) as u32 + 1
                    }
                })
                .collect();
            let components = label_components(&keys, lines, samples);
            assert_eq!(
                components.sizes,
                flood_fill_count(&keys, lines, samples),
                "trial {trial}"
            );
        }
    }

    #[test]
    fn u_shape_merges_and_diagonals_connect() {
        #[rustfmt::skip]
        let keys = vec![
            1, 0, 1, 0, 0,
            1, 0, 1, 0, 0,
            1, 1, 1, 0, 0,
            0, 0, 0, 1, 0,
        ];
        let c = label_components(&keys, 4, 5);
        assert_eq!(c.region_count, 1);
        assert_eq!(c.sizes, vec![8]);
        let filtered = c.filter_by_area(9, u64::MAX);
        assert_eq!(filtered.region_count, 0);
        assert!(filtered.region_of_pixel.iter().all(|&r| r == 0));
    }
}
