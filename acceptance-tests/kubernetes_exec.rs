//! `pods/exec` through the API server, the way pgpool_ha's kubernetes target
//! reaches its pods from a runner that reaches nothing else: the crate's own
//! exec client (`shardform::kubernetes::exec`) against a real pod the
//! stand-in's node agent runs, checked beside `kubectl exec`.

use std::fs;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use shardform::kubernetes::exec::{exec, ExecError, PodCommand};

use crate::harness::kube::{Standin, StandinOptions};
use crate::harness::wait_until;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: default}
spec:
  securityContext: {runAsUser: 999}
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: example.org/shell:1
    command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 0.2; done']
    env: [{name: GREETING, value: hello}]
"#;

/// A client from the stand-in's kubeconfig, on `runtime` (its connection task lives there).
fn client(standin: &Standin, runtime: &tokio::runtime::Runtime) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(standin.kubeconfig()).expect("the stand-in's kubeconfig");
    runtime.block_on(async {
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config from the kubeconfig");
        Client::try_from(config).expect("client")
    })
}

fn command<'a>(pod: &'a str, argv: &'a [&'a str], stdin: Option<&'a [u8]>) -> PodCommand<'a> {
    PodCommand {
        namespace: "default",
        pod,
        container: None,
        argv,
        stdin,
        timeout: Duration::from_secs(20),
    }
}

#[test]
fn exec_through_the_api_server_gives_output_exit_codes_and_clear_errors() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED kubernetes_exec: the stand-in's node agent needs root");
        return;
    }
    let standin = Standin::start_with(
        "exec",
        StandinOptions {
            run_pods: true,
            ..Default::default()
        },
    );
    let manifest = standin.dir().join("pod.yaml");
    fs::write(&manifest, POD).unwrap();
    let (ok, _, stderr) = standin.kubectl_status(&["apply", "--server-side"], Some(&manifest));
    assert!(ok, "{stderr}");
    wait_until("the pod to become ready", Duration::from_secs(20), || {
        standin.pod_ready("default", "shell")
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = client(&standin, &runtime);
    let run = |argv: &[&str], stdin: Option<&[u8]>| {
        runtime.block_on(exec(&client, &command("shell", argv, stdin)))
    };

    let out = run(
        &[
            "sh",
            "-c",
            "echo $GREETING from $(id -un) on $(hostname); echo oops >&2",
        ],
        None,
    )
    .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "hello from postgres on shell\n", "oops\n")
    );
    let out = run(&["sh", "-c", "exit 3"], None).unwrap();
    assert_eq!(out.exit_code, 3);
    assert!(!out.success());
    // stdin is fed and closed (v5.channel.k8s.io), so a reader of all its input ends.
    let out = run(&["tr", "a-z", "A-Z"], Some(b"through the api server")).unwrap();
    assert_eq!(out.stdout, "THROUGH THE API SERVER");
    // Much input and output at once (many WebSocket frames each way, neither side waiting).
    let big: Vec<u8> = (0..400_000u32)
        .map(|i| b"abcdefghij\n"[(i % 11) as usize])
        .collect();
    let out = run(&["cat"], Some(&big)).unwrap();
    assert_eq!(out.stdout.as_bytes(), &big[..]);
    // The same pod through kubectl, the second real client.
    let (ok, stdout, _) =
        standin.kubectl_status(&["exec", "shell", "--", "cat", "/etc/hostname"], None);
    assert!(ok);
    assert_eq!(stdout, "shell\n");

    // Errors the API server answers reach the caller with its message.
    let err = runtime
        .block_on(exec(&client, &command("nosuch", &["true"], None)))
        .unwrap_err();
    assert!(matches!(err, ExecError::Api(_)), "{err:?}");
    assert!(
        err.to_string().contains("pods \"nosuch\" not found"),
        "{err}"
    );
    standin.control(
        "/_standin/forbid",
        json!({"verbs": ["create"], "resource": "pods"}),
    );
    let err = run(&["true"], None).unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    standin.kubectl(&["delete", "--raw", "/_standin/forbid"]);
    let err = runtime
        .block_on(exec(
            &client,
            &PodCommand {
                timeout: Duration::from_millis(500),
                ..command("shell", &["sleep", "5"], None)
            },
        ))
        .unwrap_err();
    assert!(matches!(err, ExecError::TimedOut(_)), "{err:?}");
}
