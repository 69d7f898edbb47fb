//! The kernel command line, end to end, on a real VM (qemu under TCG, booted by GRUB): the one
//! thing a container cannot show, since it shares this machine's kernel. Slow (two boots under
//! emulation, a few minutes): one test.

use crate::harness::real::RealLab;
use crate::harness::{oignon, Fixture};
use std::time::Duration;

/// The kernel role's parameters, as the inventory renders them (the shipped fleet keeps the
/// defaults).
const PARAMS: &[&str] = oignon::inventory::DEFAULT_KERNEL_PARAMS;

#[test]
fn kernel_role_update_grub_and_apply_reboot_put_the_parameters_in_proc_cmdline() {
    let test = "kernel_role_update_grub_and_apply_reboot_put_the_parameters_in_proc_cmdline";
    // ekumen: the Gandi VM migrated so that its kernel command line can be set.
    let f = Fixture::shipped_on_real();
    let hosts = f.real_hosts(&["ekumen"]);
    let Some(lab) = RealLab::start_vm(test, &hosts[0]) else {
        return;
    };
    let cmdline = |lab: &RealLab| lab.run("ekumen", "cat /proc/cmdline");
    let first = cmdline(&lab);
    for p in PARAMS {
        assert!(
            !first.split_whitespace().any(|w| w == *p),
            "{p} already in {first}"
        );
    }

    // The kernel role's GRUB drop-in, and a real update-grub: grub.cfg carries the line, the
    // running kernel does not yet, and the plan says so.
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["ran `update-grub`", "✓ ekumen: applied"]);
    let grub = lab.run("ekumen", "cat /boot/grub/grub.cfg");
    let linux = grub
        .lines()
        .find(|l| l.trim_start().starts_with("linux"))
        .unwrap_or_default()
        .to_string();
    for p in PARAMS {
        assert!(
            linux.split_whitespace().any(|w| w == *p),
            "update-grub did not put {p} in {linux}"
        );
    }
    oignon(&f, &lab, &["plan", "--detailed-exitcode"])
        .code(0)
        .out_has(&[
            "reboot required: the running kernel's command line (/proc/cmdline) lacks slab_nomerge",
        ]);
    // A real kernel: kernel.* sysctls load for real here (a container only records them).
    assert_eq!(
        lab.run("ekumen", "sysctl -n kernel.kptr_restrict").trim(),
        "2"
    );

    // apply --reboot: GRUB boots the new line, oignon waits for the new boot.
    let before = lab.boot_id("ekumen");
    let t0 = std::time::Instant::now();
    let run = oignon(
        &f,
        &lab,
        &[
            "apply",
            "--yes",
            "--brief",
            "--reboot",
            "--reboot-timeout",
            "600",
        ],
    );
    run.code(0)
        .out_has(&["✓ ekumen: applied", "rebooted (--reboot): back after"]);
    eprintln!("real_vm: apply --reboot took {:?}", t0.elapsed());
    assert_ne!(lab.boot_id("ekumen"), before, "no new boot");
    let now = cmdline(&lab);
    for p in PARAMS {
        assert!(
            now.split_whitespace().any(|w| w == *p),
            "{p} not in /proc/cmdline after the reboot: {now}"
        );
    }
    // The relay came back by itself, and nothing is left to do.
    lab.wait_active("ekumen", "tor@ekumen", Duration::from_secs(180));
    let plan = oignon(&f, &lab, &["plan", "--detailed-exitcode"]);
    plan.code(0);
    assert!(!plan.stdout.contains("reboot required"), "{}", plan.stdout);
}
