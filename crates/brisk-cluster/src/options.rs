//! [`SlurmOptions`]: what the sbatch scripts ask for, where data and logs go, how the driver
//! reaches Slurm.

use std::path::PathBuf;
use std::time::Duration;

use crate::ClusterError;

/// How the Slurm backend submits work. Build it in code or from an address
/// (`slurm://?partition=debug&cpus=2&mem=1G&time=00:10:00&store=/shared/brisk`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SlurmOptions {
    /// Where units, values and markers live: a directory on a shared filesystem, or any URL
    /// `brisk_store::from_url` understands (`objfile://`, `s3://`, …). Every node must
    /// reach it.
    pub store: String,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` (walltime of one unit, `HH:MM:SS`).
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem` (`1G`, `500M`).
    pub mem: Option<String>,
    /// `--gres=gpu:N`.
    pub gpus: Option<u32>,
    /// More `#SBATCH` lines, without the prefix (`--qos=short`).
    pub sbatch_lines: Vec<String>,
    /// Shell lines run before the worker starts (`module load …`, `source venv/bin/activate`).
    pub setup_lines: Vec<String>,
    /// Where Slurm writes the workers' logs (one file per unit and attempt). Must exist on
    /// the compute nodes; created by the driver. Default: `<store>/logs` for a directory
    /// store, `./brisk-slurm-logs` otherwise.
    pub log_dir: Option<PathBuf>,
    /// A command the Slurm clients run under (`nsenter --net=/run/netns/slurmns`).
    pub command_prefix: Vec<String>,
    /// The worker program (default: this program, `std::env::current_exe`).
    pub worker_program: Option<PathBuf>,
    /// Arguments for the worker program (a test binary needs the name of the test that calls
    /// `brisk_cluster::init`).
    pub worker_args: Vec<String>,
    /// At most this many units per stage (a stage's nodes are split evenly between them).
    pub units_per_stage: usize,
    /// How many times a unit that ended without its done marker (killed, node lost, corrupt
    /// output) is submitted again.
    pub retries: u32,
    /// How often the driver asks `squeue`.
    pub poll: Duration,
    /// How long one stage may take, queueing included, before the driver cancels it.
    pub stage_timeout: Duration,
    /// Queue each stage's successor while the stage runs, as a job array that starts only if
    /// every unit of this one succeeds (`--dependency=afterok`, `--kill-on-invalid-dep=yes`):
    /// the next stage waits for no driver poll and no new trip through the queue. When a unit
    /// fails the successor is cancelled by Slurm and the driver goes on stage by stage.
    /// Default `true`; `false` submits each stage only after the previous one has ended.
    pub chain_stages: bool,
}

impl SlurmOptions {
    /// Defaults with `store` as the data plane: 8 units per stage, 2 retries, polling every
    /// 200 ms, one hour per stage, stages chained, no sbatch resource options (the cluster's
    /// defaults).
    #[must_use]
    pub fn new(store: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            partition: None,
            account: None,
            time: None,
            cpus: None,
            mem: None,
            gpus: None,
            sbatch_lines: Vec::new(),
            setup_lines: Vec::new(),
            log_dir: None,
            command_prefix: Vec::new(),
            worker_program: None,
            worker_args: Vec::new(),
            units_per_stage: 8,
            retries: 2,
            poll: Duration::from_millis(200),
            stage_timeout: Duration::from_secs(3600),
            chain_stages: true,
        }
    }

    /// Parses `slurm://?key=value&…`. Keys: `store` (required), `partition`, `account`,
    /// `time`, `cpus`, `mem`, `gpus`, `sbatch` and `setup` (repeatable), `logs`, `prefix`
    /// and `args` (split on spaces), `program`, `units`, `retries`, `poll_ms`, `timeout_s`,
    /// `chain` (`true`/`false`). Values are taken literally except `%20` → space and `%26` →
    /// `&`.
    ///
    /// # Errors
    /// [`ClusterError::Address`] naming the offending part.
    pub fn from_address(address: &str) -> Result<Self, ClusterError> {
        let bad = |reason: String| ClusterError::Address {
            address: address.to_owned(),
            reason,
        };
        let rest = address
            .strip_prefix("slurm://")
            .ok_or_else(|| bad("a Slurm address starts with `slurm://`".into()))?;
        let query = rest.trim_start_matches('/').trim_start_matches('?');
        let mut store = None;
        let mut o = Self::new("");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("`{pair}` is not key=value")))?;
            let v = v.replace("%20", " ").replace("%26", "&");
            let num = |what: &str| -> Result<u64, ClusterError> {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("`{k}={v}`: {what} must be a whole number")))
            };
            match k {
                "store" => store = Some(v.clone()),
                "partition" => o.partition = Some(v.clone()),
                "account" => o.account = Some(v.clone()),
                "time" => o.time = Some(v.clone()),
                "cpus" => {
                    o.cpus = Some(u32::try_from(num("cpus")?).map_err(|_| bad("cpus".into()))?)
                }
                "mem" => o.mem = Some(v.clone()),
                "gpus" => {
                    o.gpus = Some(u32::try_from(num("gpus")?).map_err(|_| bad("gpus".into()))?)
                }
                "sbatch" => o.sbatch_lines.push(v.clone()),
                "setup" => o.setup_lines.push(v.clone()),
                "logs" => o.log_dir = Some(PathBuf::from(&v)),
                "prefix" => o.command_prefix = v.split_whitespace().map(str::to_owned).collect(),
                "program" => o.worker_program = Some(PathBuf::from(&v)),
                "args" => o.worker_args = v.split_whitespace().map(str::to_owned).collect(),
                "units" => {
                    o.units_per_stage = usize::try_from(num("units")?)
                        .map_err(|_| bad("units".into()))?
                        .max(1);
                }
                "retries" => {
                    o.retries = u32::try_from(num("retries")?).map_err(|_| bad("retries".into()))?
                }
                "poll_ms" => o.poll = Duration::from_millis(num("poll_ms")?),
                "timeout_s" => o.stage_timeout = Duration::from_secs(num("timeout_s")?),
                "chain" => {
                    o.chain_stages = match v.as_str() {
                        "true" | "yes" | "1" => true,
                        "false" | "no" | "0" => false,
                        _ => return Err(bad(format!("`chain={v}`: expected true or false"))),
                    }
                }
                other => return Err(bad(format!("unknown option `{other}`"))),
            }
        }
        o.store = store.ok_or_else(|| {
            bad("`store=` is required: the directory or URL every node shares".into())
        })?;
        Ok(o)
    }

    /// The `#SBATCH` lines for one stage (everything but the array and the output path).
    #[must_use]
    pub fn sbatch_directives(&self) -> Vec<String> {
        let mut v = vec!["--requeue".to_owned()];
        if let Some(p) = &self.partition {
            v.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            v.push(format!("--account={a}"));
        }
        if let Some(t) = &self.time {
            v.push(format!("--time={t}"));
        }
        if let Some(c) = self.cpus {
            v.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            v.push(format!("--mem={m}"));
        }
        if let Some(g) = self.gpus {
            v.push(format!("--gres=gpu:{g}"));
        }
        v.extend(self.sbatch_lines.iter().cloned());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_into_sbatch_options() {
        let o = SlurmOptions::from_address(
            "slurm://?partition=debug&cpus=2&mem=1G&time=00:10:00&store=/shared/brisk&sbatch=--qos=short&setup=module%20load%20rust&prefix=nsenter%20--net=/run/netns/x&units=4",
        )
        .unwrap();
        assert_eq!(o.store, "/shared/brisk");
        assert_eq!(o.units_per_stage, 4);
        assert!(o.chain_stages, "chained by default");
        let unchained = SlurmOptions::from_address("slurm://?store=/s&chain=false").unwrap();
        assert!(!unchained.chain_stages);
        assert_eq!(o.setup_lines, ["module load rust"]);
        assert_eq!(o.command_prefix, ["nsenter", "--net=/run/netns/x"]);
        assert_eq!(
            o.sbatch_directives(),
            [
                "--requeue",
                "--partition=debug",
                "--time=00:10:00",
                "--cpus-per-task=2",
                "--mem=1G",
                "--qos=short"
            ]
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (addr, needle) in [
            ("threads://2", "starts with `slurm://`"),
            ("slurm://?partition=debug", "`store=` is required"),
            ("slurm://?store=/x&cpus=two", "cpus must be a whole number"),
            ("slurm://?store=/x&colour=blue", "unknown option `colour`"),
            ("slurm://?store", "is not key=value"),
            ("slurm://?store=/x&chain=maybe", "expected true or false"),
        ] {
            let e = SlurmOptions::from_address(addr).unwrap_err().to_string();
            assert!(e.contains(needle), "{addr}: {e}");
        }
    }
}
