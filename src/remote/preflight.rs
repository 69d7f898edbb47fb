//! preflight.sh's Rust half: its requests (through the one encoder, [`Records`]) and the parser
//! of its answer into [`Facts`]. The script's header documents both. The answer is data: a line
//! that is not one of the documented records is an error, and so is an answer without its end.

use crate::bootstrap::{Facts, Listener};
use crate::remote::record::{RecordError, Records};

/// The paths whose free space bootstrap wants to know.
pub const SPACE: &[&str] = &["/", "/var"];

/// The requests: the paths to measure.
pub fn requests() -> Result<Vec<u8>, RecordError> {
    let mut r = Records::new();
    for p in SPACE {
        r.push(&["m", p])?;
    }
    Ok(r.into_bytes())
}

/// Parses preflight.sh's output.
pub fn parse(stdout: &[u8]) -> Result<Facts, String> {
    let text =
        std::str::from_utf8(stdout).map_err(|_| "preflight output is not UTF-8".to_string())?;
    let mut f = Facts::default();
    let mut complete = false;
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || {
            format!(
                "unexpected preflight output line {}: {:?}",
                n + 1,
                line.chars().take(120).collect::<String>()
            )
        };
        let yes_no = |v: &str| match v {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        };
        match fields.as_slice() {
            ["K", key, value] => {
                let v = value.to_string();
                let opt = || (!value.is_empty()).then(|| value.to_string());
                match *key {
                    "os_id" => f.os_id = v,
                    "version_id" => f.version_id = v,
                    "codename" => f.codename = v,
                    "arch" => f.arch = v,
                    "init" => f.init = v,
                    "container" => f.container = v,
                    "route4" => f.route4 = v,
                    "route6" => f.route6 = v,
                    "grub_cfg" => f.grub_cfg = *value == "1",
                    "grub_pkgs" => {
                        f.grub_pkgs = value.split_whitespace().map(str::to_string).collect()
                    }
                    "ntp" => f.ntp = yes_no(value),
                    "ntp_synchronized" => f.ntp_synchronized = yes_no(value),
                    "tor_path" => f.tor_path = opt(),
                    "tor_version_line" => f.tor_version_line = opt(),
                    "tor_pkg" => f.tor_pkg = opt(),
                    "end" if *value == "ok" => complete = true,
                    _ => return Err(bad()),
                }
            }
            ["A", addr] => f.addresses.push(addr.parse().map_err(|_| bad())?),
            ["L", addr, port, who] => f.listening.push(Listener {
                addr: addr.parse().map_err(|_| bad())?,
                port: port.parse().map_err(|_| bad())?,
                who: who.to_string(),
            }),
            ["D", path, kib] => f
                .free_kib
                .push((path.to_string(), kib.parse().map_err(|_| bad())?)),
            ["S", file, uri, suite] => {
                f.sources
                    .push((file.to_string(), uri.to_string(), suite.to_string()))
            }
            _ => return Err(bad()),
        }
        if complete && n + 1 < text.lines().count() {
            return Err("preflight output goes on after its end record".into());
        }
    }
    if !complete {
        return Err(
            "preflight output ended early (no `K end ok`): the host's answer is incomplete".into(),
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = "K\tos_id\tdebian\nK\tversion_id\t12\nK\tcodename\tbookworm\nK\tarch\tamd64\nK\tinit\tsystemd\nK\tcontainer\tsystemd-nspawn\nA\t127.0.0.1\nA\t192.0.2.50\nA\t2001:db8:50::1\nK\troute4\t\nK\troute6\t\nK\tgrub_cfg\t0\nK\tgrub_pkgs\t\nD\t/\t50129224\nD\t/var\t50129208\nK\tntp\tno\nK\tntp_synchronized\tno\nL\t0.0.0.0\t22\tssh.service\nL\t::\t22\tssh.service\nK\ttor_path\t/usr/sbin/tor\nK\ttor_version_line\tTor version 0.4.9.11.\nK\ttor_pkg\t0.4.9.11-0+deb12u1\nS\t/etc/apt/sources.list\thttp://deb.debian.org/debian\tbookworm\nK\tend\tok\n";

    #[test]
    fn a_lab_hosts_answer_parses_into_its_facts() {
        let f = parse(LAB.as_bytes()).unwrap();
        assert_eq!(
            (f.os_id.as_str(), f.codename.as_str()),
            ("debian", "bookworm")
        );
        assert_eq!(f.addresses.len(), 3);
        assert_eq!(
            f.listening[1].addr,
            "::".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(f.free_kib[1], ("/var".to_string(), 50129208));
        assert_eq!(f.ntp_synchronized, Some(false));
        assert_eq!(f.tor_pkg.as_deref(), Some("0.4.9.11-0+deb12u1"));
        assert!(f.route4.is_empty() && !f.grub_cfg && f.grub_pkgs.is_empty());
    }

    #[test]
    fn a_truncated_or_forged_answer_is_an_error() {
        let cut = &LAB[..LAB.len() - "K\tend\tok\n".len()];
        assert!(parse(cut.as_bytes()).unwrap_err().contains("ended early"));
        let forged = LAB.replace("A\t192.0.2.50", "A\t192.0.2.50; rm -rf /");
        assert!(parse(forged.as_bytes()).unwrap_err().contains("line 8"));
        let extra = format!("{LAB}K\tend\tok\n");
        assert!(parse(extra.as_bytes())
            .unwrap_err()
            .contains("after its end"));
        let unknown = LAB.replace("K\tarch", "K\tarchitecture");
        assert!(parse(unknown.as_bytes()).is_err());
    }

    #[test]
    fn requests_ask_for_the_free_space_of_root_and_var() {
        assert_eq!(requests().unwrap(), b"m\t/\nm\t/var\n");
    }
}
