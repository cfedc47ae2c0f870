//! The command line of `cargo xtask bench-edge`: its usage text and the options it parses.

use anyhow::{Context as _, bail, ensure};

use super::TOKEN_CACHE_SIZE;
use super::cases::CASES;

pub const USAGE: &str =
    "usage: cargo xtask bench-edge [--rounds N] [--seconds N] [--warmup N] [--connections N]
                         [--eddsa-tokens N] [--rs256-tokens N] [--cases a,b,...] [--keep]

  --rounds N         rounds, 1..=20 (default 5); each runs every case once with its own
                     Envoy, every other round in reverse order; the report gives medians
  --seconds N        measured seconds per case and round (default 4)
  --warmup N         warm-up seconds per case and round, not measured (default 2)
  --connections N    wrk connections, one wrk thread (default 16)
  --eddsa-tokens N   distinct Ed25519 tokens for the fresh-token cases (default 300000)
  --rs256-tokens N   distinct RS256 tokens (default 12000; RSA signing here takes ~3 ms each)
  --cases LIST       run only these cases (a, b, c-eddsa, c-rs256, d, e-eddsa, e-rs256, f, g,
                     d-500, h, g-500, h-hot, service); results/edge.md is written only by
                     a full run
  --keep             keep the work directory (Envoy configurations and logs, token files)";

/// What runs once after the rounds, selectable with `--cases` like a case.
const AFTER_ROUNDS: [&str; 2] = ["h-hot", "service"];

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub seconds: u64,
    pub warmup: u64,
    pub connections: u32,
    pub eddsa_tokens: usize,
    pub rs256_tokens: usize,
    pub cases: Option<Vec<String>>,
    pub keep: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            rounds: 5,
            seconds: 4,
            warmup: 2,
            connections: 16,
            eddsa_tokens: 300_000,
            rs256_tokens: 12_000,
            cases: None,
            keep: false,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--keep" {
                options.keep = true;
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let number = || -> anyhow::Result<u64> {
                value
                    .parse()
                    .with_context(|| format!("{flag} {value}: not a number"))
            };
            match flag.as_str() {
                "--rounds" => options.rounds = usize::try_from(number()?)?,
                "--seconds" => options.seconds = number()?,
                "--warmup" => options.warmup = number()?,
                "--connections" => options.connections = u32::try_from(number()?)?,
                "--eddsa-tokens" => options.eddsa_tokens = usize::try_from(number()?)?,
                "--rs256-tokens" => options.rs256_tokens = usize::try_from(number()?)?,
                "--cases" => {
                    let list: Vec<String> = value.split(',').map(str::to_owned).collect();
                    for key in &list {
                        ensure!(
                            AFTER_ROUNDS.contains(&key.as_str())
                                || CASES.iter().any(|c| c.key == key),
                            "--cases: unknown case `{key}`\n\n{USAGE}"
                        );
                    }
                    options.cases = Some(list);
                }
                other => bail!("unknown flag {other}\n\n{USAGE}"),
            }
        }
        ensure!(
            (1..=20).contains(&options.rounds),
            "--rounds must be 1..=20, not {}",
            options.rounds
        );
        ensure!(
            (1..=120).contains(&options.seconds) && options.warmup <= 60,
            "--seconds must be 1..=120 and --warmup 0..=60"
        );
        ensure!(
            (1..=1024).contains(&options.connections),
            "--connections must be 1..=1024"
        );
        ensure!(
            options.eddsa_tokens > TOKEN_CACHE_SIZE && options.rs256_tokens > TOKEN_CACHE_SIZE,
            "token pools must be larger than the token caches ({TOKEN_CACHE_SIZE}), or fresh tokens would hit them"
        );
        Ok(options)
    }

    pub fn wants(&self, key: &str) -> bool {
        self.cases
            .as_ref()
            .is_none_or(|list| list.iter().any(|k| k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Options::parse(&args)
    }

    fn error_of(args: &[&str]) -> String {
        match parse(args) {
            Ok(options) => panic!("{args:?} was accepted as {options:?}"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn defaults_are_five_rounds_of_four_seconds() {
        let options = parse(&[]).unwrap_or_else(|e| panic!("no arguments were refused: {e:#}"));
        assert_eq!((options.rounds, options.seconds), (5, 4));
    }

    #[test]
    fn rounds_within_range_are_taken() {
        for rounds in [1, 7, 20] {
            let options = parse(&["--rounds", &rounds.to_string()])
                .unwrap_or_else(|e| panic!("--rounds {rounds} was refused: {e:#}"));
            assert_eq!(options.rounds, rounds);
        }
    }

    #[test]
    fn rounds_out_of_range_are_refused() {
        for rounds in ["0", "21"] {
            let error = error_of(&["--rounds", rounds]);
            assert!(
                error.contains("--rounds must be 1..=20"),
                "--rounds {rounds} gave: {error}"
            );
        }
    }

    #[test]
    fn rounds_that_are_not_a_number_or_missing_are_refused() {
        let error = error_of(&["--rounds", "three"]);
        assert!(
            error.contains("--rounds three: not a number"),
            "--rounds three gave: {error}"
        );
        let error = error_of(&["--rounds"]);
        assert!(
            error.contains("--rounds needs a value"),
            "--rounds alone gave: {error}"
        );
    }
}
