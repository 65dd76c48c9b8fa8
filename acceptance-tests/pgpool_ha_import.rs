//! `terraform import pgpool_ha.NAME BASE_DIR`: the imported state equals the
//! applied one and the plan after import is empty; IDs that name no group
//! are refused with a clear error.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use crate::harness::Workdir;
use crate::pgpool_ha::Group;

const ADDRESS: &str = "pgpool_ha.g";

#[test]
fn pgpool_ha_import_reproduces_the_applied_state() {
    let group = Group::new("pgpool_ha_import");
    let tf = &group.tf;
    // Group::write sets postgresql_settings, pgpool_settings and failover_settings.
    group.write(
        1,
        "  deletion_protection = false\n  preload_libraries = [\"pg_stat_statements\"]\n  superuser_password = \"imp:0rt\\\\pw\"\n  timeouts {\n    create = \"10m\"\n  }\n",
    );
    tf.init();
    let started = Instant::now();
    tf.apply_and_assert_idempotent();
    eprintln!(
        "pgpool_ha_import: group of 2 up in {:.1?}",
        started.elapsed()
    );
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);

    // What import reads: saved at apply, private, the configuration's values.
    let saved = group.base.join("shardform.json");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", saved.display());
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.contains("\"synchronous_commit\": \"on\"")
            && text.contains("\"num_init_children\": 8"),
        "{text}"
    );

    assert!(!text.contains("imp:0rt"), "the password is in shardform.json");

    // The harness's check: the imported state equals the applied one (the
    // password included, read back from the group's pool_passwd).
    let base = group.base.to_str().unwrap();
    tf.import_and_compare(ADDRESS, base, &[]);

    // Another workdir with the same configuration: bad IDs fail clearly and
    // leave nothing in state, then the real import plans nothing.
    let fresh = Workdir::new("pgpool_ha_import-fresh");
    fresh.write_config(&std::fs::read_to_string(tf.path().join("main.tf")).unwrap());
    fresh.init();
    let not_a_group = fresh.path().to_str().unwrap().to_string();
    for (id, expect) in [
        (not_a_group.as_str(), "Not a pgpool_ha group"),
        ("relative/dir", "Invalid import ID"),
        (&format!("{base}-missing"), "No such group"),
    ] {
        let out = fresh.run(&["import", ADDRESS, id]);
        assert!(!out.success(), "import of {id:?} succeeded:\n{out}");
        assert!(
            out.stderr.contains(expect),
            "import of {id:?} did not say {expect:?}:\n{out}"
        );
        eprintln!(
            "pgpool_ha_import: import of {id:?} refused: {}",
            out.stderr
                .trim()
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    let list = fresh.run(&["state", "list"]);
    assert!(
        !list.stdout.contains(ADDRESS),
        "a refused import left state:\n{list}"
    );
    let out = fresh.run(&["import", ADDRESS, base]);
    assert!(out.success(), "{out}");
    fresh.assert_plan_empty();
    // Importing changed nothing: the group still runs as it did.
    assert_eq!(group.summary(), ["node0:primary:up", "node1:standby:up"]);
    drop(fresh);

    tf.destroy();
    let left = group.pids();
    assert!(left.is_empty(), "processes left after destroy: {left:?}");
    assert!(
        !group.base.exists(),
        "{} is still there",
        group.base.display()
    );
}
