//! `load`: the kernel's 1, 5 and 15 minute load averages, and the 1 minute one per CPU.

use super::procfs::{self, ProcFile, ProcRoot};
use super::{Names, Output};
use crate::config::probes::load::TYPE;

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().ok());
    Some([parts.next()??, parts.next()??, parts.next()??])
}

pub struct LoadProbe {
    loadavg: ProcFile,
    names: Names,
    buf: String,
}

impl LoadProbe {
    pub fn new(root: ProcRoot) -> Self {
        LoadProbe {
            loadavg: ProcFile::new(root.proc.join("loadavg")),
            names: Names::new("load"),
            buf: String::new(),
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.loadavg.read_required(&mut self.buf)?;
        let [l1, l5, l15] = parse_loadavg(&self.buf).ok_or("cannot parse /proc/loadavg")?;
        let names = self.names.get_flat(TYPE.fields);
        out.push(&names[0], l1);
        out.push(&names[1], l5);
        out.push(&names[2], l15);
        out.push(&names[3], l1 / procfs::online_cpus() as f64);
        Ok(())
    }
}

impl super::Read for LoadProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        assert_eq!(
            parse_loadavg("0.52 0.58 1.59 1/467 12345\n"),
            Some([0.52, 0.58, 1.59])
        );
        assert_eq!(parse_loadavg("x"), None);
    }
}
