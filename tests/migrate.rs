//! `oignon migrate`'s refusals that need no host: each says what is wrong and what to do, before
//! any connection.

use crate::harness::Fixture;

#[test]
fn migrate_to_a_host_not_in_the_inventory_says_to_add_it() {
    let f = Fixture::shipped();
    f.run(&["migrate", "ekumen", "--to", "ekumen2", "--yes"])
        .code(1)
        .err_has(&[
            "no host `ekumen2` in the inventory; add the new VM first",
            "hosts: ",
        ]);
}

#[test]
fn migrate_of_an_unknown_relay_lists_the_relays() {
    let f = Fixture::shipped();
    f.run(&["migrate", "nobody", "--to", "marcuse", "--yes"])
        .code(1)
        .err_has(&["no relay `nobody` in the inventory; relays: ", "marcuse1"]);
}

#[test]
fn migrate_to_the_host_it_is_on_is_refused() {
    let f = Fixture::shipped();
    f.run(&["migrate", "ekumen", "--to", "ekumen", "--yes"])
        .code(1)
        .err_has(&["ekumen is already on ekumen: nothing to migrate"]);
}

#[test]
fn migrate_without_the_identity_in_secrets_says_to_import_it() {
    let f = Fixture::shipped();
    std::fs::remove_dir_all(f.path("secrets/relays/marcuse2")).unwrap();
    let r = f.run(&["migrate", "marcuse2", "--to", "ekumen", "--yes"]);
    r.code(1).err_has(&[
        "relay `marcuse2` has no identity in secrets/relays/marcuse2",
        "oignon secrets import marcuse (a running one)",
        "the inventory has errors (above); fix them, then migrate",
    ]);
}

#[test]
fn rollback_without_a_migration_under_way_says_so() {
    let f = Fixture::shipped();
    f.run(&["migrate", "ekumen", "--to", "marcuse", "--rollback"])
        .code(1)
        .err_has(&["no migration of ekumen under way", "nothing to roll back"]);
}
