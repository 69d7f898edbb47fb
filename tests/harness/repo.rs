//! A local apt repository for real lab hosts, which have no network: the `.deb`s of some
//! packages and everything they depend on, fetched once on this machine with `apt-get download`
//! (it reaches the Debian archive) and cached under /var/cache/oignon-lab/repo-debs/KEY (KEY:
//! the package list's hash), then laid out as `dists/SUITE/main/binary-ARCH/Packages` +
//! `Release` with `apt-ftparchive` (apt-utils), optionally signed with a test key (gpg in a
//! temporary GNUPGHOME), and copied into a host (`install_on`) where a `file:` source reads it.
//!
//! The repository's Release says which origin it stands for: `Debian` (the release's archive,
//! unsigned, `[trusted=yes]`) or `TorProject` (deb.torproject.org, signed: apt checks it against
//! the keyring oignon ships).

use super::real::RealLab;
use super::script::describe;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where downloaded packages are kept between runs.
pub const DEBS_CACHE: &str = "/var/cache/oignon-lab/repo-debs";

/// A repository directory on this machine.
pub struct LocalRepo {
    pub dir: PathBuf,
    suite: String,
    origin: String,
    _tmp: tempfile::TempDir,
}

/// A test signing key (not the Tor Project's): its GNUPGHOME and its public keyring, binary.
pub struct TestKey {
    home: tempfile::TempDir,
    /// `gpg --export`: what a `Signed-By:` file holds.
    pub keyring: Vec<u8>,
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(describe(what, &out));
    }
    Ok(out.stdout)
}

impl TestKey {
    /// A new ed25519 signing key in a temporary GNUPGHOME.
    pub fn new() -> Result<TestKey, String> {
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let gpg = |args: &[&str]| {
            let mut c = Command::new("gpg");
            c.arg("--homedir")
                .arg(home.path())
                .args(["--batch", "--quiet"]);
            c.args(args);
            c
        };
        run(
            &mut gpg(&[
                "--passphrase",
                "",
                "--quick-gen-key",
                "oignon test repository <repo@example.org>",
                "ed25519",
                "sign",
                "never",
            ]),
            "gpg --quick-gen-key",
        )?;
        let keyring = run(&mut gpg(&["--export"]), "gpg --export")?;
        Ok(TestKey { home, keyring })
    }

    fn sign(&self, release: &Path) -> Result<(), String> {
        let dir = release.parent().ok_or("no parent")?;
        for (flag, out) in [
            ("--clearsign", "InRelease"),
            ("--detach-sign", "Release.gpg"),
        ] {
            run(
                Command::new("gpg")
                    .arg("--homedir")
                    .arg(self.home.path())
                    .args(["--batch", "--quiet", "--yes", "--armor", flag, "-o"])
                    .arg(dir.join(out))
                    .arg(release),
                "gpg sign",
            )?;
        }
        Ok(())
    }
}

/// The packages and their whole dependency closure (no recommends), as apt on this machine
/// resolves them: real package names only (virtual ones are provided by one of these).
fn closure(packages: &[&str]) -> Result<Vec<String>, String> {
    let out = run(
        Command::new("apt-cache")
            .args([
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
            ])
            .args(packages),
        "apt-cache depends",
    )?;
    let mut v: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// The cached `.deb`s of `packages`' closure, downloaded the first time.
fn debs(packages: &[&str]) -> Result<PathBuf, String> {
    use sha2::Digest as _;
    let mut sorted: Vec<&str> = packages.to_vec();
    sorted.sort();
    let key = hex::encode(&sha2::Sha256::digest(sorted.join(" ").as_bytes())[..8]);
    let dir = Path::new(DEBS_CACHE).join(key);
    // One download at a time in this process (the tests run in threads); another process
    // downloading the same list meanwhile loses the rename race harmlessly.
    static DOWNLOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = DOWNLOAD.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("ok").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(DEBS_CACHE).map_err(|e| format!("{DEBS_CACHE}: {e}"))?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(DEBS_CACHE)
        .map_err(|e| format!("{DEBS_CACHE}: {e}"))?;
    let all = closure(packages)?;
    run(
        Command::new("apt-get")
            .arg("download")
            .args(&all)
            .current_dir(tmp.path()),
        "apt-get download (this machine must reach its Debian mirror once; then the cache serves)",
    )?;
    std::fs::write(tmp.path().join("ok"), all.join("\n")).map_err(|e| e.to_string())?;
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if !dir.join("ok").exists() {
        return Err(format!("{}: the download did not land", dir.display()));
    }
    Ok(dir)
}

impl LocalRepo {
    /// A repository of `packages` (with their dependencies) for `suite`, whose Release says
    /// `Origin: origin` and `Label: origin`; signed with `key` if given.
    pub fn build(
        packages: &[&str],
        suite: &str,
        origin: &str,
        key: Option<&TestKey>,
    ) -> Result<LocalRepo, String> {
        for (program, package) in [("apt-ftparchive", "apt-utils"), ("gpg", "gpg")] {
            if !super::script::on_path(program) {
                return Err(format!(
                    "a local repository needs {program} (apt-get install {package}; ./scripts/test installs it)"
                ));
            }
        }
        let debs = debs(packages)?;
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = tmp.path().to_path_buf();
        let pool = dir.join("pool");
        let bin = dir.join(format!("dists/{suite}/main/binary-amd64"));
        std::fs::create_dir_all(&pool).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
        for e in std::fs::read_dir(&debs).map_err(|e| e.to_string())? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.extension().is_some_and(|x| x == "deb") {
                std::fs::copy(&p, pool.join(p.file_name().ok_or("name")?))
                    .map_err(|e| e.to_string())?;
            }
        }
        let repo = LocalRepo {
            dir,
            suite: suite.to_string(),
            origin: origin.to_string(),
            _tmp: tmp,
        };
        repo.index(key)?;
        Ok(repo)
    }

    /// Writes `Packages` and `Release` for what is in `pool/` (and signs it with `key`).
    fn index(&self, key: Option<&TestKey>) -> Result<(), String> {
        let (dir, suite, origin) = (&self.dir, self.suite.as_str(), self.origin.as_str());
        let bin = dir.join(format!("dists/{suite}/main/binary-amd64"));
        // A re-index starts clean: the old Release files would be listed in the new one.
        for old in ["Release", "InRelease", "Release.gpg"] {
            let _ = std::fs::remove_file(dir.join(format!("dists/{suite}/{old}")));
        }
        let packages_file = run(
            Command::new("apt-ftparchive")
                .args(["packages", "pool"])
                .current_dir(dir),
            "apt-ftparchive packages",
        )?;
        std::fs::write(bin.join("Packages"), packages_file).map_err(|e| e.to_string())?;
        let o = |k: &str, v: &str| format!("-oAPT::FTPArchive::Release::{k}={v}");
        let release = run(
            Command::new("apt-ftparchive")
                .args([
                    o("Origin", origin),
                    o("Label", origin),
                    o("Suite", suite),
                    o("Codename", suite),
                    o("Architectures", "amd64"),
                    o("Components", "main"),
                ])
                .arg("release")
                .arg(format!("dists/{suite}"))
                .current_dir(dir),
            "apt-ftparchive release",
        )?;
        let release_path = dir.join(format!("dists/{suite}/Release"));
        std::fs::write(&release_path, release).map_err(|e| e.to_string())?;
        if let Some(k) = key {
            k.sign(&release_path)?;
        }
        Ok(())
    }

    /// Adds a copy of `package` whose version is the pool's plus `suffix` (the same files,
    /// repacked with `dpkg-deb`): a newer release for an upgrade to find. Returns the version.
    pub fn add_newer(
        &self,
        package: &str,
        suffix: &str,
        key: Option<&TestKey>,
    ) -> Result<String, String> {
        let pool = self.dir.join("pool");
        let deb = std::fs::read_dir(&pool)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")))
            })
            .ok_or(format!("no {package} in the repository"))?;
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let tree = work.path().join("tree");
        run(
            Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tree),
            "dpkg-deb -R",
        )?;
        let control = tree.join("DEBIAN/control");
        let text = std::fs::read_to_string(&control).map_err(|e| e.to_string())?;
        let old = text
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .ok_or("no Version in control")?
            .to_string();
        let new = format!("{old}{suffix}");
        std::fs::write(
            &control,
            text.replace(&format!("Version: {old}\n"), &format!("Version: {new}\n")),
        )
        .map_err(|e| e.to_string())?;
        run(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-b"])
                .arg(&tree)
                .arg(pool.join(format!("{package}_{}_new.deb", new.replace(':', "%3a")))),
            "dpkg-deb -b",
        )?;
        self.index(key)?;
        Ok(new)
    }

    /// Copies the repository into `host` at `at` (world-readable: apt's `_apt` reads it).
    pub fn install_on(&self, lab: &RealLab, host: &str, at: &str) {
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&self.dir)
            .args(["-cf", "-", "."])
            .output()
            .expect("tar");
        assert!(tar.status.success(), "{}", describe("tar", &tar));
        let staged = format!("{at}.tar");
        lab.write(host, &staged, &tar.stdout);
        lab.run(
            host,
            &format!(
                "mkdir -p '{at}' && tar -x --no-same-owner -C '{at}' -f '{staged}' && rm -f '{staged}' && chmod -R a+rX '{at}'"
            ),
        );
    }
}
