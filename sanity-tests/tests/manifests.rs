//! The Kubernetes manifests of `deploy/` checked against the code they deploy.
//!
//! Every kustomization under `deploy/manifests` (the base and each overlay) is
//! rendered with the pinned kustomize (`deploy/tests/tools.env`; taken from
//! `$SHORTHORN_KUSTOMIZE`, else `target/deploy-tools/bin`, else installed there
//! with `go install`), then:
//! - each `shorthorn` container's arguments are parsed by the real binary's
//!   clap parser (unknown flags and bad values fail), every flag appears in
//!   `shorthorn <sub> --help`, and every required flag is given;
//! - the controller's TOML ConfigMap is parsed by `ControllerConfig::from_toml`
//!   and agrees with the node Service, agent port, token Secret and etcd;
//! - the CSI sockets of the drivers and their sidecars, the registrar's
//!   `--kubelet-registration-path` and the spdk_tgt socket all resolve to the
//!   same files through the pods' volumes;
//! - the driver name of the CSIDriver, StorageClass and VolumeSnapshotClass
//!   is `identity::DRIVER_NAME`, and the StorageClass parameters pass
//!   `params::parse_volume_params`.
//!
//! The schema validation of the same renders is `deploy/tests/check.sh`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::Value;
use shorthorn_controller::config::{ControllerConfig, StoreConfig};
use shorthorn_controller::identity::DRIVER_NAME;
use shorthorn_controller::params::parse_volume_params;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `KEY=value` lines of `deploy/tests/tools.env`.
fn tools_env() -> HashMap<String, String> {
    let text = std::fs::read_to_string(workspace().join("deploy/tests/tools.env")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

fn kustomize() -> PathBuf {
    if let Some(p) = std::env::var_os("SHORTHORN_KUSTOMIZE") {
        return PathBuf::from(p);
    }
    let version = tools_env()["KUSTOMIZE_VERSION"].clone();
    let bin_dir = workspace().join("target/deploy-tools/bin");
    let bin = bin_dir.join("kustomize");
    let installed = Command::new(&bin)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == version)
        .unwrap_or(false);
    if !installed {
        let status = Command::new("go")
            .args([
                "install",
                &format!("sigs.k8s.io/kustomize/kustomize/v5@{version}"),
            ])
            .env("GOBIN", &bin_dir)
            .env("GOFLAGS", "-mod=mod")
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "could not install kustomize {version} with `go install` ({status:?}); \
             run deploy/tests/check.sh or set SHORTHORN_KUSTOMIZE"
        );
    }
    bin
}

/// One rendered kustomization.
struct Render {
    name: String,
    docs: Vec<Value>,
}

fn kustomization_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join("kustomization.yaml").exists() {
        out.push(dir.to_owned());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for e in entries {
        kustomization_dirs(&e, out);
    }
}

/// The documents of a multi-document YAML stream (`---` lines between).
fn parse_docs(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            docs.last_mut().unwrap().push_str(line);
            docs.last_mut().unwrap().push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}:\n{d}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let kustomize = kustomize();
        let root = workspace().join("deploy/manifests");
        let mut dirs = Vec::new();
        kustomization_dirs(&root, &mut dirs);
        assert!(
            dirs.len() >= 2,
            "expected a base and overlays under {root:?}"
        );
        dirs.iter()
            .map(|dir| {
                let out = Command::new(&kustomize)
                    .arg("build")
                    .arg(dir)
                    .output()
                    .unwrap_or_else(|e| panic!("running {kustomize:?}: {e}"));
                assert!(
                    out.status.success(),
                    "kustomize build {dir:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Render {
                    name: dir.strip_prefix(&root).unwrap().display().to_string(),
                    docs: parse_docs(&String::from_utf8(out.stdout).unwrap()),
                }
            })
            .collect()
    })
}

fn examples() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(workspace().join("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| parse_docs(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

/// The `shorthorn` binary of this build profile, built if needed.
fn shorthorn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SHORTHORN_BIN") {
            return PathBuf::from(p);
        }
        // This test runs from <target>/<profile>/deps/.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
        let target_dir = profile_dir.parent().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace())
            .args(["build", "--quiet", "-p", "shorthorn", "--bin", "shorthorn"])
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p shorthorn");
        assert!(status.success(), "cargo build -p shorthorn failed");
        let bin = profile_dir.join("shorthorn");
        assert!(bin.exists(), "{bin:?} missing after cargo build");
        bin
    })
}

fn help(sub: &str) -> &'static str {
    static HELP: OnceLock<std::sync::Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut map = HELP.get_or_init(Default::default).lock().unwrap();
    map.entry(sub.to_owned()).or_insert_with(|| {
        let out = Command::new(shorthorn_bin())
            .args([sub, "--help"])
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "shorthorn {sub} --help failed");
        Box::leak(String::from_utf8(out.stdout).unwrap().into_boxed_str())
    })
}

// ---------- YAML helpers ----------

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.').fold(v, |v, k| v.get(k).unwrap_or(&NULL))
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).as_str().unwrap_or("")
}

fn seq<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    get(v, path).as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(v: &Value, path: &str) -> Vec<String> {
    seq(v, path)
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn objects<'a>(docs: &'a [Value], kind: &str) -> std::vec::IntoIter<&'a Value> {
    docs.iter()
        .filter(|d| s(d, "kind") == kind)
        .collect::<Vec<_>>()
        .into_iter()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects(docs, kind)
        .find(|d| s(d, "metadata.name") == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// (workload, pod spec) of every Deployment, DaemonSet and StatefulSet.
fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| matches!(s(d, "kind"), "Deployment" | "DaemonSet" | "StatefulSet"))
        .map(|d| {
            (
                format!("{}/{}", s(d, "kind"), s(d, "metadata.name")),
                get(d, "spec.template.spec"),
            )
        })
        .collect()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    seq(pod, "containers")
        .iter()
        .find(|c| s(c, "name") == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn is_shorthorn(c: &Value) -> bool {
    let image = s(c, "image");
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    repo == "shorthorn" || repo.ends_with("/shorthorn")
}

/// Value of `--name=value` (or `--name value`) in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            return Some(v.to_owned());
        }
        if *a == long {
            return it.next().cloned().or(Some(String::new()));
        }
    }
    None
}

/// Kubernetes `$(VAR)` expansion with the container's env; downward-API
/// fields get plausible stand-ins.
fn expand(arg: &str, c: &Value) -> String {
    let mut vars = HashMap::new();
    for e in seq(c, "env") {
        let value = if let Some(v) = get(e, "value").as_str() {
            v.to_owned()
        } else if !s(e, "valueFrom.configMapKeyRef.key").is_empty() {
            // A ConfigMap entry: a plausible value of that key.
            format!(
                "stand-in-{}",
                s(e, "valueFrom.configMapKeyRef.key").to_lowercase()
            )
        } else {
            match s(e, "valueFrom.fieldRef.fieldPath") {
                "spec.nodeName" => "node-a".into(),
                "status.hostIP" | "status.podIP" => "10.0.0.1".into(),
                "metadata.namespace" => "shorthorn-system".into(),
                "metadata.name" => "pod-0".into(),
                other => panic!("no stand-in for env {e:?} ({other})"),
            }
        };
        vars.insert(s(e, "name").to_owned(), value);
    }
    let mut out = arg.to_owned();
    while let Some(start) = out.find("$(") {
        let end = out[start..].find(')').expect("unterminated $(") + start;
        let name = &out[start + 2..end];
        let value = vars
            .get(name)
            .unwrap_or_else(|| panic!("{arg}: $({name}) is not in the container's env"));
        out.replace_range(start..=end, value);
    }
    out
}

/// The volume mounted at the longest prefix of `path`, and the rest of it.
fn resolve<'a>(c: &'a Value, path: &'a str) -> (&'a str, String) {
    seq(c, "volumeMounts")
        .iter()
        .filter_map(|m| {
            let mount = s(m, "mountPath").trim_end_matches('/');
            let rest = path.strip_prefix(mount)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (mount.len(), s(m, "name"), rest))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, name, rest)| (name, rest.to_owned()))
        .unwrap_or_else(|| panic!("container {}: nothing mounted over {path}", s(c, "name")))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    seq(pod, "volumes")
        .iter()
        .find(|v| s(v, "name") == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn unix_path(endpoint: &str) -> &str {
    endpoint
        .strip_prefix("unix://")
        .unwrap_or_else(|| panic!("{endpoint} is not a unix:// endpoint"))
}

// ---------- tests ----------

#[test]
fn shorthorn_container_args_are_accepted_by_the_binary() {
    let mut checked = 0;
    for r in renders() {
        for (workload, pod) in pod_specs(&r.docs) {
            for c in seq(pod, "containers").iter().filter(|c| is_shorthorn(c)) {
                let ctx = format!("{}: {workload} container {}", r.name, s(c, "name"));
                assert!(
                    seq(c, "command").is_empty(),
                    "{ctx}: must use the image's entrypoint"
                );
                let args = strings(c, "args");
                let sub = args
                    .first()
                    .unwrap_or_else(|| panic!("{ctx}: no subcommand"));
                let help = help(sub);
                for a in args.iter().skip(1) {
                    let Some(name) = a.strip_prefix("--") else {
                        continue;
                    };
                    let name = name.split('=').next().unwrap();
                    let shown = help
                        .split(|ch: char| ch.is_whitespace() || ch == ',')
                        .any(|w| w == format!("--{name}"));
                    assert!(shown, "{ctx}: --{name} is not in `shorthorn {sub} --help`");
                }
                // Required options, as clap lists them on the Usage line.
                let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
                for word in usage.split_whitespace().filter(|w| w.starts_with("--")) {
                    assert!(
                        flag(&args, &word[2..]).is_some(),
                        "{ctx}: required {word} not given"
                    );
                }
                // The real parser: it checks every flag and value it meets
                // and stops at the trailing --help before running anything.
                let expanded: Vec<String> = args.iter().map(|a| expand(a, c)).collect();
                let out = Command::new(shorthorn_bin())
                    .args(&expanded)
                    .arg("--help")
                    .env_clear()
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{ctx}: shorthorn rejects {expanded:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    // controller + node, in the base and in each overlay.
    assert!(checked >= 2 * renders().len(), "only {checked} checked");
}

#[test]
fn the_parser_check_catches_bad_flags_and_values() {
    for bad in [
        &["node", "--no-such-flag", "--help"][..],
        &["node", "--agent-listen=not-an-address", "--help"][..],
        &["controller", "--csi-endpoint", "--help"][..],
    ] {
        let out = Command::new(shorthorn_bin())
            .args(bad)
            .env_clear()
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
}

/// The controller's config, as its container sees it.
fn controller_config(docs: &[Value]) -> (ControllerConfig, &Value, &Value) {
    let (_, pod) = pod_specs(docs)
        .into_iter()
        .find(|(w, _)| w == "Deployment/shorthorn-controller")
        .expect("controller Deployment");
    let c = container(pod, "shorthorn-controller");
    let path = flag(&strings(c, "args"), "config").expect("--config");
    let (vol, rest) = resolve(c, &path);
    let cm_name = s(volume(pod, vol), "configMap.name");
    let cm = object(docs, "ConfigMap", cm_name);
    let key = rest.trim_start_matches('/');
    let toml = get(cm, "data")
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(!toml.is_empty(), "ConfigMap {cm_name} has no key {key}");
    let config = ControllerConfig::from_toml(toml)
        .unwrap_or_else(|e| panic!("ConfigMap {cm_name}/{key} is rejected: {e}"));
    (config, pod, c)
}

#[test]
fn controller_config_parses_and_matches_the_deployment() {
    for r in renders() {
        let docs = &r.docs;
        let (config, pod, c) = controller_config(docs);
        let ctx = &r.name;

        // Discovery: the node DaemonSet's headless Service, its agent port.
        let d = config.discovery.as_ref().expect("discovery configured");
        let svc = object(docs, "Service", "shorthorn-node");
        let ns = s(svc, "metadata.namespace");
        assert_eq!(s(svc, "spec.clusterIP"), "None", "{ctx}: not headless");
        assert!(
            d.agent_dns == format!("shorthorn-node.{ns}.svc.cluster.local")
                || d.agent_dns == format!("shorthorn-node.{ns}.svc"),
            "{ctx}: agent_dns {} is not the node Service",
            d.agent_dns
        );
        let port = &seq(svc, "spec.ports")[0];
        assert_eq!(get(port, "port").as_u64(), Some(u64::from(d.agent_port)));
        let ds = object(docs, "DaemonSet", "shorthorn-node");
        let labels = get(ds, "spec.template.metadata.labels");
        for (k, v) in get(svc, "spec.selector").as_mapping().unwrap() {
            assert_eq!(labels.get(k.as_str().unwrap()), Some(v), "{ctx}: selector");
        }
        let node_pod = get(ds, "spec.template.spec");
        let node = container(node_pod, "shorthorn-node");
        let node_args = strings(node, "args");
        let listen = flag(&node_args, "agent-listen").expect("--agent-listen");
        assert!(
            listen.ends_with(&format!(":{}", d.agent_port)),
            "{ctx}: agent listens on {listen}, controller dials {}",
            d.agent_port
        );
        let target = get(port, "targetPort");
        let named = seq(node, "ports")
            .iter()
            .find(|p| get(p, "name") == target || get(p, "containerPort") == target)
            .expect("Service targetPort is a node container port");
        assert_eq!(
            get(named, "containerPort").as_u64(),
            Some(u64::from(d.agent_port))
        );

        // The lvstore spdk-tgt.sh creates is the one the controller uses.
        let spdk = objects(docs, "ConfigMap")
            .find(|c| get(c, "data.SPDK_LVSTORE").is_string())
            .expect("ConfigMap shorthorn-spdk");
        assert_eq!(s(spdk, "data.SPDK_LVSTORE"), d.lvstore, "{ctx}: lvstore");
        assert_eq!(
            s(spdk, "data.SPDK_CLUSTER_SIZE"),
            d.cluster_size.to_string(),
            "{ctx}: cluster size"
        );
        assert!(d.base_bdev.is_none(), "{ctx}: base bdevs are per node");

        // The same token Secret on both sides.
        let token = d.agent_token_file.to_str().unwrap();
        let (vol, _) = resolve(c, token);
        let ctrl_secret = s(volume(pod, vol), "secret.secretName").to_owned();
        let node_token = flag(&node_args, "agent-token-file").expect("--agent-token-file");
        let (vol, node_rest) = resolve(node, &node_token);
        let node_secret = s(volume(node_pod, vol), "secret.secretName");
        assert!(
            !ctrl_secret.is_empty(),
            "{ctx}: controller token not from a Secret"
        );
        assert_eq!(ctrl_secret, node_secret, "{ctx}: different token Secrets");
        assert_eq!(
            Path::new(token).file_name(),
            Path::new(&node_rest).file_name(),
            "{ctx}: token file keys differ"
        );

        // etcd: the in-cluster StatefulSet's members, when it is deployed.
        let StoreConfig::Etcd { endpoints, .. } = &config.store else {
            panic!("{ctx}: store must be etcd in Kubernetes")
        };
        if let Some(sts) =
            objects(docs, "StatefulSet").find(|d| s(d, "metadata.name") == "shorthorn-etcd")
        {
            let replicas = get(sts, "spec.replicas").as_u64().unwrap();
            let svc = s(sts, "spec.serviceName");
            let ns = s(sts, "metadata.namespace");
            let want: Vec<String> = (0..replicas)
                .map(|i| format!("http://shorthorn-etcd-{i}.{svc}.{ns}.svc:2379"))
                .collect();
            assert_eq!(endpoints, &want, "{ctx}: etcd endpoints");
            object(docs, "PodDisruptionBudget", "shorthorn-etcd");
        } else {
            assert!(!endpoints.is_empty());
        }
    }
}

#[test]
fn csi_sockets_match_between_drivers_and_sidecars() {
    for r in renders() {
        for (workload, pod) in pod_specs(&r.docs) {
            let Some(driver) = seq(pod, "containers").iter().find(|c| is_shorthorn(c)) else {
                continue;
            };
            let ctx = format!("{}: {workload}", r.name);
            let endpoint = flag(&strings(driver, "args"), "csi-endpoint").expect("--csi-endpoint");
            let socket = resolve(driver, unix_path(&endpoint));
            let mut sidecars = 0;
            for c in seq(pod, "containers") {
                let args = strings(c, "args");
                if let Some(addr) = flag(&args, "csi-address") {
                    let addr = expand(&addr, c);
                    let addr = addr.strip_prefix("unix://").unwrap_or(&addr);
                    let (vol, rest) = resolve(c, addr);
                    assert_eq!(
                        (vol, &rest),
                        (socket.0, &socket.1),
                        "{ctx}: {} dials another socket than the driver serves",
                        s(c, "name")
                    );
                    sidecars += 1;
                }
                if let Some(reg) = flag(&args, "kubelet-registration-path") {
                    let host = s(volume(pod, socket.0), "hostPath.path");
                    assert_eq!(
                        reg,
                        format!("{host}{}", socket.1),
                        "{ctx}: kubelet registration path is not the driver socket on the host"
                    );
                    assert!(
                        host.ends_with(&format!("/{DRIVER_NAME}")),
                        "{ctx}: plugin dir {host}"
                    );
                    let (vol, _) = resolve(c, "/registration/x");
                    assert_eq!(
                        s(volume(pod, vol), "hostPath.path"),
                        "/var/lib/kubelet/plugins_registry"
                    );
                }
            }
            assert!(sidecars >= 2, "{ctx}: only {sidecars} sidecars found");
        }

        // The node service and spdk_tgt share the JSON-RPC socket.
        let ds = object(&r.docs, "DaemonSet", "shorthorn-node");
        let pod = get(ds, "spec.template.spec");
        let node = container(pod, "shorthorn-node");
        let spdk = container(pod, "spdk-tgt");
        let sock = flag(&strings(node, "args"), "spdk-socket").expect("--spdk-socket");
        let served = seq(spdk, "env")
            .iter()
            .find(|e| s(e, "name") == "SPDK_RPC_SOCKET")
            .map(|e| s(e, "value"))
            .expect("SPDK_RPC_SOCKET");
        assert_eq!(
            resolve(node, &sock),
            resolve(spdk, served),
            "{}: spdk socket",
            r.name
        );
        let kubelet = seq(node, "volumeMounts")
            .iter()
            .find(|m| s(m, "mountPath") == "/var/lib/kubelet")
            .expect("kubelet dir mounted");
        assert_eq!(s(kubelet, "mountPropagation"), "Bidirectional");
    }
}

#[test]
fn driver_name_is_the_plugin_name_everywhere() {
    let examples = examples();
    for r in renders() {
        let drivers: Vec<_> = objects(&r.docs, "CSIDriver").collect();
        assert_eq!(drivers.len(), 1, "{}: one CSIDriver", r.name);
        assert_eq!(s(drivers[0], "metadata.name"), DRIVER_NAME, "{}", r.name);
        assert_eq!(get(drivers[0], "spec.attachRequired").as_bool(), Some(true));
    }
    let sc: Vec<_> = objects(&examples, "StorageClass").collect();
    assert!(!sc.is_empty(), "no StorageClass example");
    for sc in sc {
        assert_eq!(s(sc, "provisioner"), DRIVER_NAME);
    }
    let vsc: Vec<_> = objects(&examples, "VolumeSnapshotClass").collect();
    assert!(!vsc.is_empty(), "no VolumeSnapshotClass example");
    for vsc in vsc {
        assert_eq!(s(vsc, "driver"), DRIVER_NAME);
    }
}

#[test]
fn storageclass_parameters_are_accepted_by_the_controller() {
    for sc in objects(&examples(), "StorageClass") {
        let params: HashMap<String, String> = get(sc, "parameters")
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().expect("parameters are strings").to_owned();
                (k.as_str().unwrap().to_owned(), v)
            })
            .collect();
        let parsed = parse_volume_params(&params)
            .unwrap_or_else(|e| panic!("{}: {e}", s(sc, "metadata.name")));
        assert_eq!(parsed.replicas, 3);
        assert_eq!(s(sc, "volumeBindingMode"), "WaitForFirstConsumer");
        assert_eq!(get(sc, "allowVolumeExpansion").as_bool(), Some(true));
    }
}

#[test]
fn sidecars_images_resources_and_users_follow_the_policy() {
    for r in renders() {
        for (workload, pod) in pod_specs(&r.docs) {
            for c in seq(pod, "containers") {
                let ctx = format!("{}: {workload} container {}", r.name, s(c, "name"));
                let image = s(c, "image");
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(
                    !tag.is_empty() && tag != "latest",
                    "{ctx}: unpinned image {image}"
                );
                for k in ["requests", "limits"] {
                    assert!(
                        get(c, &format!("resources.{k}"))
                            .as_mapping()
                            .is_some_and(|m| !m.is_empty()),
                        "{ctx}: no resource {k}"
                    );
                }
                let args = strings(c, "args");
                if image.contains("/sig-storage/csi-") && workload.starts_with("Deployment") {
                    assert!(
                        flag(&args, "leader-election").is_some(),
                        "{ctx}: sidecar without leader election"
                    );
                }
                if image.contains("/csi-provisioner:") {
                    assert_eq!(
                        flag(&args, "feature-gates").as_deref(),
                        Some("Topology=true")
                    );
                    assert!(flag(&args, "extra-create-metadata").is_some(), "{ctx}");
                }
            }
        }
        let ctrl = object(&r.docs, "Deployment", "shorthorn-controller");
        assert_eq!(
            get(ctrl, "spec.template.spec.securityContext.runAsNonRoot").as_bool(),
            Some(true),
            "{}: controller runs as root",
            r.name
        );
        let spdk = container(
            get(
                object(&r.docs, "DaemonSet", "shorthorn-node"),
                "spec.template.spec",
            ),
            "spdk-tgt",
        );
        let hp = |k: &str| get(spdk, &format!("resources.{k}.hugepages-2Mi")).clone();
        assert!(
            !hp("limits").is_null(),
            "{}: spdk-tgt without hugepages",
            r.name
        );
        assert_eq!(
            hp("limits"),
            hp("requests"),
            "{}: hugepages request != limit",
            r.name
        );
    }
}

#[test]
fn base_leaves_the_images_nobody_ships_as_visible_placeholders() {
    let base = renders()
        .iter()
        .find(|r| r.name == "base")
        .expect("base render");
    let images: BTreeMap<String, String> = pod_specs(&base.docs)
        .into_iter()
        .flat_map(|(_, pod)| seq(pod, "containers").iter())
        .map(|c| (s(c, "name").to_owned(), s(c, "image").to_owned()))
        .collect();
    assert!(
        images["spdk-tgt"].starts_with("set-me.invalid/"),
        "{images:?}"
    );
}

/// The Services a ServiceMonitor selects (same namespace, labels match).
fn selected_services<'a>(docs: &'a [Value], monitor: &Value) -> Vec<&'a Value> {
    let ns = s(monitor, "metadata.namespace");
    let want = get(monitor, "spec.selector.matchLabels")
        .as_mapping()
        .expect("matchLabels");
    objects(docs, "Service")
        .filter(|svc| s(svc, "metadata.namespace") == ns)
        .filter(|svc| {
            let labels = get(svc, "metadata.labels");
            want.iter()
                .all(|(k, v)| labels.get(k.as_str().unwrap_or_default()) == Some(v))
        })
        .collect()
}

/// Every `shorthorn_*` family name the code registers, from its sources:
/// the controller's metrics and the node agent's.
fn exported_families() -> Vec<String> {
    let mut text = String::new();
    for dir in [
        "controller/src/metrics",
        "controller/src/fence",
        "node/src/agent",
    ] {
        for entry in std::fs::read_dir(workspace().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut out: Vec<String> = text
        .split('"')
        .filter(|t| {
            t.starts_with("shorthorn_") && t.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn service_monitors_scrape_ports_that_serve_metrics_and_the_dashboard_asks_for_real_families() {
    let mut monitored = 0;
    for r in renders() {
        let docs = &r.docs;
        let ctx = &r.name;
        let monitors: Vec<&Value> = objects(docs, "ServiceMonitor").collect();
        if monitors.is_empty() {
            continue;
        }
        monitored += 1;
        let (config, _, controller) = controller_config(docs);
        let metrics = config
            .metrics
            .address
            .unwrap_or_else(|| panic!("{ctx}: ServiceMonitors but no [metrics] address"));
        for monitor in &monitors {
            let name = s(monitor, "metadata.name");
            let services = selected_services(docs, monitor);
            assert_eq!(
                services.len(),
                1,
                "{ctx}: ServiceMonitor {name} selects {} Services",
                services.len()
            );
            let svc = services[0];
            for endpoint in seq(monitor, "spec.endpoints") {
                assert_eq!(s(endpoint, "path"), "/metrics", "{ctx}: {name}");
                let port = seq(svc, "spec.ports")
                    .iter()
                    .find(|p| get(p, "name") == get(endpoint, "port"))
                    .unwrap_or_else(|| panic!("{ctx}: {name} scrapes a port its Service lacks"));
                // The Service's target is a container port of the selected pods.
                let (_, pod) = pod_specs(docs)
                    .into_iter()
                    .find(|(w, _)| {
                        let labels = get(
                            object(
                                docs,
                                w.split('/').next().unwrap(),
                                w.split('/').nth(1).unwrap(),
                            ),
                            "spec.template.metadata.labels",
                        );
                        get(svc, "spec.selector")
                            .as_mapping()
                            .unwrap()
                            .iter()
                            .all(|(k, v)| labels.get(k.as_str().unwrap()) == Some(v))
                    })
                    .unwrap_or_else(|| panic!("{ctx}: {name}'s Service selects no workload"));
                let target = get(port, "targetPort");
                let container_port = seq(pod, "containers")
                    .iter()
                    .flat_map(|c| seq(c, "ports").iter())
                    .find(|p| get(p, "name") == target || get(p, "containerPort") == target)
                    .unwrap_or_else(|| panic!("{ctx}: {name}: targetPort is no container port"));
                let number = get(container_port, "containerPort").as_u64();
                match s(endpoint, "scheme") {
                    "http" => {
                        assert_eq!(
                            number,
                            Some(u64::from(metrics.port())),
                            "{ctx}: {name}: not the [metrics] port"
                        );
                        assert!(seq(controller, "ports")
                            .iter()
                            .any(|p| get(p, "containerPort").as_u64() == number));
                    }
                    "https" => {
                        let d = config.discovery.as_ref().expect("discovery");
                        assert_eq!(
                            number,
                            Some(u64::from(d.agent_port)),
                            "{ctx}: {name}: not the agent port"
                        );
                        assert_eq!(
                            s(endpoint, "tlsConfig.serverName"),
                            d.agent_dns,
                            "{ctx}: {name}: the agents' certificate name"
                        );
                        assert_eq!(
                            s(endpoint, "tlsConfig.ca.secret.name"),
                            "shorthorn-agent-tls"
                        );
                    }
                    other => panic!("{ctx}: {name}: scheme {other}"),
                }
            }
        }
        // The dashboard only asks for families the code exports.
        let families = exported_families();
        assert!(families.len() > 20, "{families:?}");
        let dashboard = objects(docs, "ConfigMap")
            .find(|c| s(c, "metadata.labels.grafana_dashboard") == "1")
            .unwrap_or_else(|| panic!("{ctx}: no dashboard ConfigMap"));
        let json = get(dashboard, "data")
            .as_mapping()
            .unwrap()
            .values()
            .next()
            .and_then(Value::as_str)
            .unwrap();
        let mut asked = Vec::new();
        let mut rest = json;
        while let Some(i) = rest.find("shorthorn_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            asked.push(name);
        }
        assert!(!asked.is_empty());
        for name in asked {
            let base = ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx))
                .unwrap_or(&name);
            assert!(
                families.iter().any(|f| f == &name || f == base),
                "{ctx}: the dashboard asks for {name}, which no code exports"
            );
        }
    }
    assert!(monitored >= 1, "no render has ServiceMonitors");
}
