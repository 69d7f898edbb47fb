//! The local transport: a host is a directory (a mounted VM image, or the README demo).

use crate::harness::Fixture;

#[test]
fn local_plan_apply_plan_converges_and_detects_drift() {
    let f = Fixture::shipped();
    let root = f.path("images");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();
    f.run(&["plan", "--local", root, "--detailed-exitcode", "--brief"])
        .code(2)
        .out_has(&["ekumen (local ", "ekumen: 9 to create"]);
    f.run(&["apply", "--local", root, "--yes", "--brief"])
        .code(0)
        .out_has(&["✓ ekumen: applied", "wrote /etc/tor/instances/ekumen/torrc"]);
    let torrc =
        std::fs::read_to_string(f.path("images/ekumen/etc/tor/instances/ekumen/torrc")).unwrap();
    assert!(torrc.contains("Nickname ekumen\n"));
    assert!(std::fs::read_to_string(f.path("images/ekumen/etc/passwd"))
        .unwrap()
        .starts_with("_tor-ekumen:"));
    f.run(&["plan", "--local", root, "--detailed-exitcode"])
        .code(0)
        .out_has(&["Fleet: 4 hosts, 0 with changes, 4 unchanged, 0 failed."]);
    std::fs::write(
        f.path("images/ekumen/etc/tor/instances/ekumen/torrc"),
        "Nickname hacked\n",
    )
    .unwrap();
    f.run(&["plan", "--local", root, "--detailed-exitcode"])
        .code(2)
        .out_has(&[
            "~ /etc/tor/instances/ekumen/torrc (drift: edited on the host since the last apply)",
            "-Nickname hacked",
        ]);
}

#[test]
fn apply_without_terminal_or_yes_is_refused() {
    let f = Fixture::shipped();
    let root = f.path("images");
    std::fs::create_dir_all(&root).unwrap();
    f.run(&["apply", "--local", root.to_str().unwrap()])
        .code(1)
        .err_has(&["needs confirmation", "--yes"]);
    assert!(
        !f.path("images/ekumen/etc/tor").exists(),
        "nothing was written"
    );
}

#[test]
fn retired_relay_is_removed_and_archived() {
    let f = Fixture::shipped();
    let root = f.path("images");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();
    f.run(&["apply", "--local", root, "--yes", "--brief"])
        .code(0);
    f.edit(
        "inventory/ielo-liazo.toml",
        "\n[[host.relay]]\nnickname = \"marcuse2\"\norport = 9001\n",
        "",
    );
    f.run(&["plan", "--local", root, "--host", "marcuse", "--brief"])
        .code(0)
        .out_has(&[
            "- /etc/tor/instances/marcuse2/torrc (no longer in the inventory",
            "- instance marcuse2 (relay left the inventory",
            "run `systemctl disable --now tor@marcuse2`",
        ]);
    f.run(&[
        "apply", "--local", root, "--yes", "--host", "marcuse", "--brief",
    ])
    .code(0)
    .out_has(&["removed /etc/tor/instances/marcuse2/torrc"]);
    assert!(!f.path("images/marcuse/etc/tor/instances/marcuse2").exists());
    let backups: Vec<String> = std::fs::read_dir(f.path("images/marcuse/var/backups/oignon"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups
            .iter()
            .any(|b| b.starts_with("etc__tor__instances__marcuse2__torrc.removed.")),
        "{backups:?}"
    );
    // Keys are never copied into backups.
    assert!(!backups.iter().any(|b| b.contains("keys")), "{backups:?}");
    f.run(&[
        "plan",
        "--local",
        root,
        "--host",
        "marcuse",
        "--detailed-exitcode",
    ])
    .code(0);
    // The other relays' MyFamily lost marcuse2's fingerprint.
    f.run(&["plan", "--local", root, "--host", "ekumen", "--brief"])
        .code(0)
        .out_has(&[
            "~ /etc/tor/instances/ekumen/torrc (the inventory changed)",
            "-MyFamily $42CF",
        ]);
}

#[test]
fn a_local_image_gets_its_relay_units_enabled_offline_and_grub_said_pending() {
    let f = Fixture::shipped();
    let root = f.path("images");
    std::fs::create_dir_all(&root).unwrap();
    // ekumen's image carries Debian's tor@.service, as an image with tor installed does;
    // marcuse's has no tor yet.
    let units = f.path("images/ekumen/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy(
        "/lib/systemd/system/tor@.service",
        units.join("tor@.service"),
    )
    .expect("tor@.service: ./scripts/test installs tor");
    std::fs::create_dir_all(f.path("images/marcuse")).unwrap();
    let root = root.to_str().unwrap();
    f.run(&["plan", "--local", root, "--brief", "--host", "ekumen"])
        .code(0)
        .out_has(&[
            "local image: update-grub does not run here; the new kernel command line is pending",
        ]);
    let run = f.run(&[
        "apply", "--local", root, "--yes", "--brief", "--host", "ekumen", "--host", "marcuse",
    ]);
    run.code(0).out_has(&[
        "ran `systemctl --root=IMAGE enable tor@ekumen.service` (local image: enabled offline, starts at boot)",
        "skipped `update-grub` (local image): PENDING: the image's GRUB configuration is not regenerated here",
        "skipped `systemctl enable --now tor@marcuse1` (local image):",
    ]);
    let link = std::fs::read_link(
        f.path("images/ekumen/etc/systemd/system/multi-user.target.wants/tor@ekumen.service"),
    )
    .expect("the unit is enabled in the image");
    assert_eq!(
        link,
        std::path::Path::new("/lib/systemd/system/tor@.service")
    );
}

#[test]
fn a_missing_local_dir_is_an_error_and_plan_creates_nothing() {
    let f = Fixture::shipped();
    f.run(&["plan", "--local", "no-such-dir", "--brief"])
        .code(1)
        .out_has(&[
            "no-such-dir: no such directory: give the directory that holds one root per host",
        ]);
    assert!(!f.path("no-such-dir").exists(), "not created");
    std::fs::create_dir(f.path("images")).unwrap();
    f.run(&[
        "plan",
        "--local",
        "images",
        "--brief",
        "--detailed-exitcode",
    ])
    .code(2);
    assert_eq!(
        std::fs::read_dir(f.path("images")).unwrap().count(),
        0,
        "plan never writes, not even a host's root"
    );
    f.run(&[
        "apply", "--local", "images", "--yes", "--brief", "--host", "ekumen",
    ])
    .code(0);
    assert!(f
        .path("images/ekumen/etc/tor/instances/ekumen/torrc")
        .is_file());
}

#[test]
fn a_link_inside_an_image_is_refused_and_nothing_is_written_outside() {
    let f = Fixture::shipped();
    let outside = f.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(f.path("images/ekumen/etc")).unwrap();
    std::os::unix::fs::symlink(&outside, f.path("images/ekumen/etc/default")).unwrap();
    f.run(&["plan", "--local", "images", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&["path through the symbolic link /etc/default"]);
    f.run(&[
        "apply", "--local", "images", "--yes", "--brief", "--host", "ekumen",
    ])
    .code(1);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn an_images_os_release_is_read_as_data_never_run() {
    let f = Fixture::shipped();
    std::fs::create_dir_all(f.path("images/ekumen/etc")).unwrap();
    let canary = f.path("ran");
    std::fs::write(
        f.path("images/ekumen/etc/os-release"),
        format!(
            "PRETTY_NAME=\"Debian $(touch {})\"\nID=debian\n",
            canary.display()
        ),
    )
    .unwrap();
    f.run(&["plan", "--local", "images", "--brief", "--host", "ekumen"])
        .code(0);
    assert!(
        !canary.exists(),
        "the image's os-release ran on the controller"
    );
}
