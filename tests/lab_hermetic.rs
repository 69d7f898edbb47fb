//! The lab is hermetic: a machine that runs its own tor instances shows none of them to a lab host.

use crate::harness::{oignon, LabFleet};

/// Removes the machine-level instance directory this test made, however the test ends.
struct MachineInstance(std::path::PathBuf);
impl Drop for MachineInstance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_machines_own_tor_instances_never_show_in_a_lab_host() {
    // As a machine running tor instances has: /etc/tor/instances/NAME/torrc.
    let dir = std::path::PathBuf::from("/etc/tor/instances/oignonhermetic");
    if dir.exists() {
        panic!(
            "{} exists already: remove it, it is this test's",
            dir.display()
        );
    }
    let made_parent = !dir.parent().unwrap().exists();
    std::fs::create_dir_all(&dir).expect("root makes /etc/tor/instances/NAME");
    let _guard = MachineInstance(if made_parent {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.clone()
    });
    std::fs::write(dir.join("torrc"), "Nickname oignonhermetic\n").unwrap();
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let run = oignon(&f, &lab, &["plan", "--brief"]);
    run.code(0);
    assert!(
        !run.stdout.contains("oignonhermetic"),
        "the machine's instance shows in a lab host:\n{}",
        run.stdout
    );
    assert!(lab
        .read("lab1", "/etc/tor/instances/oignonhermetic/torrc")
        .is_none());
}
