//! Which cubes this process takes: `--shard K/N`, else the Slurm array variables.

use anyhow::{bail, Context, Result};

/// `K/N` (0 <= K < N), else the Slurm array variables, else everything.
pub fn shard(arg: Option<&str>) -> Result<Option<(usize, usize)>> {
    let parse = |k: &str, n: &str, what: &str| -> Result<(usize, usize)> {
        let (k, n): (usize, usize) = (
            k.trim()
                .parse()
                .with_context(|| format!("{what}: '{k}' is not a number"))?,
            n.trim()
                .parse()
                .with_context(|| format!("{what}: '{n}' is not a number"))?,
        );
        if n == 0 || k >= n {
            bail!("{what}: shard {k} of {n} does not exist (0 <= K < N)");
        }
        Ok((k, n))
    };
    if let Some(arg) = arg {
        let Some((k, n)) = arg.split_once('/') else {
            bail!("--shard '{arg}' is not K/N");
        };
        return parse(k, n, "--shard").map(Some);
    }
    match (
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_ARRAY_TASK_COUNT"),
    ) {
        (Ok(k), Ok(n)) => {
            let min: usize = std::env::var("SLURM_ARRAY_TASK_MIN")
                .ok()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let k: usize = k.trim().parse().context("SLURM_ARRAY_TASK_ID")?;
            parse(
                &(k.saturating_sub(min)).to_string(),
                &n,
                "SLURM_ARRAY_TASK_*",
            )
            .map(Some)
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn shards_parse() {
        assert_eq!(shard(Some("1/4")).unwrap(), Some((1, 4)));
        assert!(shard(Some("4/4")).is_err());
        assert!(shard(Some("x/4")).is_err());
        assert!(shard(Some("2")).is_err());
    }
}
