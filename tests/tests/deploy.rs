//! The deployment files, checked without a Docker engine or a cluster (none exists on the
//! build machines). Maintained tools do the generic checks:
//! - `deploy/Dockerfile`: hadolint;
//! - `docker-compose.yml`: the compose-spec JSON schema (check-jsonschema's copy);
//! - `deploy/k8s`: the Kubernetes 1.30 and 1.37 schemas (kubernetes-validate), and
//!   `kubectl kustomize`.
//!
//! The assertions below are the few that no generic linter can make: the Redis roles,
//! the gRPC health names of the probes, non-root images, settings the binaries really read,
//! and which ports are reachable from where.
//!
//! The Python tools are pinned in `tests/python-tools.txt` and run from test-support's
//! virtual environment ([`test_support::tools`]); in CI a missing tool fails the test.
//! Run: `scripts/test.sh -p test-support -E 'binary(deploy)'`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use serde_yaml::Value;
use test_support::tools::{self, PythonTools};

/// The three processes: binary name, crate directory, gRPC port.
const BINARIES: [(&str, &str, u16); 3] = [
    ("session-service", "services/session-service", 50051),
    ("deck-service", "services/deck-service", 50052),
    ("gateway", "gateway", 50050),
];

/// The Kubernetes versions the manifests must validate against: the oldest we support
/// (native gRPC probes are GA since 1.27) and the newest the pinned package bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The namespace `kustomization.yaml` puts everything in.
const NAMESPACE: &str = "learngreek";

// ---------------------------------------------------------------------------------------
// Files, YAML and the tools.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML text, empty ones skipped.
fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

fn yaml(relative: &str) -> Value {
    serde_yaml::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn as_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A sequence's items as strings (empty when `value` is no sequence).
fn strings(value: &Value) -> Vec<String> {
    items(value).filter_map(as_str).collect()
}

fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_sequence().into_iter().flatten()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_mapping()
        .map(|m| m.keys().filter_map(as_str).collect())
        .unwrap_or_default()
}

/// `(host, port)` of a `scheme://[user:password@]host[:port][/path]` URL.
fn url_host_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().ok()),
        None => (host_port.to_owned(), None),
    }
}

/// The settings of a redis.conf text, `name -> value`.
fn redis_conf(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(char::is_whitespace))
        .map(|(name, value)| (name.to_lowercase(), value.trim().to_owned()))
        .collect()
}

/// Every environment variable a binary reads: the `env = "..."` of its crate's and the
/// common crate's clap arguments, plus `RUST_LOG` (the log filter).
fn variables_read_by(crate_dir: &str) -> BTreeSet<String> {
    fn scan(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                scan(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = fs::read_to_string(&path).expect("read source");
                for piece in text.split("env = \"").skip(1) {
                    if let Some((name, _)) = piece.split_once('"') {
                        found.insert(name.to_owned());
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::from(["RUST_LOG".to_owned()]);
    scan(&repo_root().join(crate_dir).join("src"), &mut found);
    scan(&repo_root().join("services/common/src"), &mut found);
    found
}

/// A folder of its own for one test's changed copies of the files.
fn scratch_file(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("learngreek-deploy-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&dir).expect("create scratch dir");
    let file = dir.join(name);
    fs::write(&file, text).expect("write scratch file");
    (dir, file)
}

/// Runs a checker; `Err` with what it printed when it reports a problem. A warning
/// counts: kubernetes-validate only warns, exit 0, about a kind it has no schema for,
/// i.e. a resource it did not check.
fn run_check(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let warned = text.lines().any(|line| line.starts_with("WARN"));
    if output.status.success() && !warned {
        Ok(())
    } else {
        Err(format!("{command:?} ({}):\n{text}", output.status))
    }
}

fn python_tools(test: &str) -> Option<PythonTools> {
    tools::or_skip(PythonTools::get(), test)
}

fn hadolint(tools: &PythonTools, dockerfile: &Path) -> Result<(), String> {
    // Every finding fails, style hints included (hadolint's default stops at info).
    run_check(
        tools
            .command("hadolint")
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(dockerfile),
    )
}

fn compose_schema(tools: &PythonTools, compose_file: &Path) -> Result<(), String> {
    run_check(
        tools
            .command("check-jsonschema")
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(compose_file),
    )
}

fn kubernetes_schemas(tools: &PythonTools, files: &[PathBuf], version: &str) -> Result<(), String> {
    run_check(
        tools
            .command("kubernetes-validate")
            .args(["--strict", "-k", version])
            .args(files),
    )
}

// ---------------------------------------------------------------------------------------
// deploy/Dockerfile

/// A Dockerfile stage: its base and its instructions (`KEYWORD`, arguments), continuation
/// lines joined, comments dropped.
struct Stage {
    base: String,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn last(&self, keyword: &str) -> Option<&str> {
        self.instructions
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }
}

/// The named stages (`FROM base AS name`) of a Dockerfile.
fn dockerfile_stages(text: &str) -> BTreeMap<String, Stage> {
    let joined = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut stages = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in joined.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            if let [base, as_, name] = words.as_slice()
                && as_.eq_ignore_ascii_case("as")
            {
                let stage = Stage {
                    base: (*base).to_owned(),
                    instructions: Vec::new(),
                };
                stages.insert((*name).to_owned(), stage);
                current = Some((*name).to_owned());
            }
        } else if let Some(stage) = current.as_ref().and_then(|name| stages.get_mut(name)) {
            stage.instructions.push((keyword, args.trim().to_owned()));
        }
    }
    stages
}

/// The JSON (exec form) array at the end of an instruction's arguments.
fn exec_form(args: &str) -> Vec<String> {
    args.find('[')
        .and_then(|start| serde_json::from_str(&args[start..]).ok())
        .unwrap_or_default()
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(tools) = python_tools("dockerfile_passes_hadolint") else {
        return;
    };

    let result = hadolint(&tools, &repo_root().join("deploy/Dockerfile"));

    if let Err(problems) = result {
        panic!("{problems}");
    }
}

#[test]
fn hadolint_reports_a_stage_left_running_as_root() {
    // Arrange: the deck-service stage switches to root.
    let Some(tools) = python_tools("hadolint_reports_a_stage_left_running_as_root") else {
        return;
    };
    let text = read("deploy/Dockerfile");
    let (head, rest) = text.split_at(text.find("AS deck-service").expect("deck-service stage"));
    let changed = format!(
        "{head}{}",
        rest.replacen("USER 10001:10001", "USER root", 1)
    );
    let (dir, file) = scratch_file("Dockerfile", &changed);

    // Act
    let result = hadolint(&tools, &file);
    fs::remove_dir_all(dir).ok();

    // Assert
    let problems = result.expect_err("hadolint accepted a root USER");
    assert!(problems.contains("DL3002"), "{problems}");
}

#[test]
fn each_image_builds_with_the_pinned_toolchain_and_runs_its_binary_as_the_pods_uid() {
    // Arrange
    let text = read("deploy/Dockerfile");
    let stages = dockerfile_stages(&text);
    let toolchain = toml_channel(&read("rust-toolchain.toml"));
    let compose = yaml("docker-compose.yml");
    let ignored: BTreeSet<String> = read("deploy/Dockerfile.dockerignore")
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();

    // Assert: the builder is the toolchain of rust-toolchain.toml.
    assert!(
        text.contains(&format!("ARG RUST_VERSION={toolchain}\n")),
        "deploy/Dockerfile must build with rust {toolchain} (rust-toolchain.toml)"
    );
    assert!(stages["builder"].base.starts_with("rust:${RUST_VERSION}"));
    for (binary, _, port) in BINARIES {
        let stage = stages
            .get(binary)
            .unwrap_or_else(|| panic!("no `FROM ... AS {binary}` stage"));
        let program = format!("/usr/local/bin/{binary}");
        // The uid the Kubernetes pods run as: runAsNonRoot needs a numeric USER.
        assert_eq!(stage.last("USER"), Some("10001:10001"), "{binary}: USER");
        assert_eq!(
            exec_form(stage.last("HEALTHCHECK").unwrap_or_default()),
            [program.as_str(), "healthcheck"],
            "{binary}: HEALTHCHECK"
        );
        assert_eq!(
            exec_form(stage.last("ENTRYPOINT").unwrap_or_default()),
            [program.as_str()],
            "{binary}: ENTRYPOINT"
        );
        let exposed = stage.last("EXPOSE").unwrap_or_default();
        assert!(
            exposed.split_whitespace().any(|p| p == port.to_string()),
            "{binary}: EXPOSE {port}"
        );
        let build = &compose["services"][binary]["build"];
        assert_eq!(build["dockerfile"].as_str(), Some("deploy/Dockerfile"));
        assert_eq!(
            build["target"].as_str(),
            Some(binary),
            "{binary}: compose target"
        );
    }
    for entry in ["target", ".git", "deploy/dev-secrets", ".local"] {
        assert!(
            ignored.contains(entry),
            "the build context must leave out {entry}"
        );
    }
}

fn toml_channel(toolchain_file: &str) -> String {
    toolchain_file
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .map(|v| {
            v.trim()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"')
                .to_owned()
        })
        .expect("rust-toolchain.toml has a channel")
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

#[test]
fn compose_file_validates_against_the_compose_spec_schema() {
    let Some(tools) = python_tools("compose_file_validates_against_the_compose_spec_schema") else {
        return;
    };

    let result = compose_schema(&tools, &repo_root().join("docker-compose.yml"));

    if let Err(problems) = result {
        panic!("{problems}");
    }
}

#[test]
fn compose_schema_validation_rejects_an_unknown_dependency_condition() {
    // Arrange: the gateway waits for deck-service with a condition Compose does not know.
    let Some(tools) =
        python_tools("compose_schema_validation_rejects_an_unknown_dependency_condition")
    else {
        return;
    };
    let text = read("docker-compose.yml");
    let (head, gateway) = text.split_at(text.find("\n  gateway:").expect("gateway service"));
    let changed = format!(
        "{head}{}",
        gateway.replacen("condition: service_healthy", "condition: service_ready", 1)
    );
    let (dir, file) = scratch_file("docker-compose.yml", &changed);

    // Act
    let result = compose_schema(&tools, &file);
    fs::remove_dir_all(dir).ok();

    // Assert
    let problems = result.expect_err("the schema accepted condition: service_ready");
    assert!(problems.contains("service_ready"), "{problems}");
}

/// A compose service's environment as a map, whichever of the two syntaxes it uses.
fn compose_environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .filter_map(|(k, v)| Some((as_str(k)?, as_str(v).unwrap_or_default())))
            .collect(),
        other => strings(other)
            .into_iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item, String::new()),
            })
            .collect(),
    }
}

#[test]
fn compose_starts_each_service_after_its_healthy_dependencies_and_publishes_only_the_gateway() {
    // Arrange
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let init_sql = read("deploy/postgres/init.sql");

    for name in keys(services) {
        // Act
        let service = &services[name.as_str()];
        let depends_on = keys(&service["depends_on"]);
        let urls: Vec<(String, String)> = compose_environment(service)
            .into_iter()
            .filter(|(variable, _)| variable.ends_with("_URL"))
            .collect();

        // Assert: a service starts once each service it has a URL for is healthy.
        for dependency in &depends_on {
            assert_eq!(
                service["depends_on"][dependency.as_str()]["condition"].as_str(),
                Some("service_healthy"),
                "{name}: depends_on {dependency}"
            );
        }
        let url_hosts: BTreeSet<String> =
            urls.iter().map(|(_, url)| url_host_port(url).0).collect();
        assert_eq!(
            url_hosts, depends_on,
            "{name}: the hosts of its *_URL variables"
        );
        for (_, url) in urls
            .iter()
            .filter(|(variable, _)| variable == "DATABASE_URL")
        {
            let database = url.rsplit('/').next().unwrap_or_default();
            assert!(
                init_sql.contains(&format!("CREATE DATABASE {database};")),
                "{name}: deploy/postgres/init.sql must create {database}"
            );
        }
        let ports = strings(&service["ports"]);
        let expected_ports: &[&str] = if name == "gateway" {
            &["8000:8000"]
        } else {
            &[]
        };
        assert_eq!(ports, expected_ports, "{name}: published ports");
        assert!(
            !strings(&service["healthcheck"]["test"]).is_empty(),
            "{name}: healthcheck"
        );
    }
    for (binary, _, _) in BINARIES {
        assert_eq!(
            strings(&services[binary]["healthcheck"]["test"]),
            ["CMD", binary, "healthcheck"],
            "{binary}: the healthcheck is the binary's own"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Settings and roles across the deployment files

#[test]
fn every_setting_in_the_deploy_files_is_a_variable_its_binary_reads() {
    let compose = yaml("docker-compose.yml");
    let manifests = manifests();
    for (binary, crate_dir, _) in BINARIES {
        // Arrange
        let known = variables_read_by(crate_dir);
        let example = read(&format!("deploy/env/{binary}.env.example"));

        // Act: compose's environment, the Kubernetes settings, the env example (also
        // the commented-out `# NAME=value` lines).
        let mut sources: Vec<(&str, BTreeSet<String>)> = vec![
            (
                "docker-compose.yml",
                compose_environment(&compose["services"][binary])
                    .into_keys()
                    .collect(),
            ),
            (
                "deploy/k8s",
                pod_settings(&manifests, binary).into_keys().collect(),
            ),
        ];
        let example_names = example
            .lines()
            .map(|line| line.trim().trim_start_matches("# "))
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_owned)
            .collect();
        sources.push(("the env example", example_names));

        // Assert
        for (source, names) in sources {
            assert!(
                names.contains("GRPC_ADDR"),
                "{binary}: {source} sets too little"
            );
            let unknown: Vec<_> = names.difference(&known).collect();
            assert!(
                unknown.is_empty(),
                "{binary} reads none of {unknown:?} ({source})"
            );
        }
    }
}

#[test]
fn sessions_redis_never_evicts_and_persists_while_cache_redis_evicts_least_recently_used() {
    // Arrange: each Redis's settings as each deployment gives them.
    let compose = yaml("docker-compose.yml");
    let manifests = manifests();
    let compose_settings = |service: &str, conf_file: &str| {
        // The config file, then the command-line flags over it, as redis-server reads them.
        let mut settings = redis_conf(&read(conf_file));
        let command = strings(&compose["services"][service]["command"]);
        for pair in command.windows(2) {
            if let Some(flag) = pair[0].strip_prefix("--") {
                settings.insert(flag.to_owned(), pair[1].clone());
            }
        }
        settings
    };
    let kubernetes_settings = |name: &str| {
        let workload = workloads(&manifests)
            .find(|w| metadata_name(w) == name)
            .unwrap_or_else(|| panic!("no workload {name}"));
        let mounts_config = items(&workload["spec"]["template"]["spec"]["volumes"])
            .any(|v| v["configMap"]["name"].as_str() == Some(name));
        assert!(
            mounts_config,
            "{name} must run with its ConfigMap's redis.conf"
        );
        let config_map = find(&manifests, "ConfigMap", name).expect("ConfigMap");
        redis_conf(
            config_map["data"]["redis.conf"]
                .as_str()
                .unwrap_or_default(),
        )
    };

    // Act: the role files alone, compose's Redis (file and flags), Kubernetes' Redis.
    let sessions = [
        redis_conf(&read("deploy/redis/sessions.conf")),
        compose_settings("redis-sessions", "deploy/redis/sessions.conf"),
        kubernetes_settings("redis-sessions"),
    ];
    let cache = [
        redis_conf(&read("deploy/redis/cache.conf")),
        compose_settings("redis-cache", "deploy/redis/cache.conf"),
        kubernetes_settings("redis-cache"),
    ];

    // Assert
    for settings in sessions {
        for (name, value) in [
            ("maxmemory-policy", "noeviction"),
            ("appendonly", "yes"),
            ("appendfsync", "everysec"),
        ] {
            assert_eq!(
                settings.get(name).map(String::as_str),
                Some(value),
                "sessions {name}"
            );
        }
    }
    for settings in cache {
        for (name, value) in [
            ("maxmemory-policy", "allkeys-lru"),
            ("maxmemory", "128mb"),
            ("appendonly", "no"),
        ] {
            assert_eq!(
                settings.get(name).map(String::as_str),
                Some(value),
                "cache {name}"
            );
        }
    }
    let sessions_workload = workloads(&manifests)
        .find(|w| metadata_name(w) == "redis-sessions")
        .unwrap();
    assert_eq!(kind(sessions_workload), "StatefulSet");
    assert!(
        !sessions_workload["spec"]["volumeClaimTemplates"].is_null(),
        "the sessions' append-only file needs a persistent volume"
    );
}

#[test]
fn signing_key_is_never_committed_and_is_mounted_where_session_service_reads_it() {
    // Arrange
    let compose = yaml("docker-compose.yml");
    let manifests = manifests();
    let makefile = read("Makefile");
    let up = makefile.split("\nup:").nth(1).expect("`make up`");

    // Act: compose's secret file; Kubernetes' Secret, its volume and its mount.
    let compose_file = compose["secrets"]["jwt_private_key"]["file"]
        .as_str()
        .unwrap_or_default();
    let secret = find(&manifests, "Secret", "learngreek-jwt-signing-key").expect("Secret");
    let deployment = find(&manifests, "Deployment", "session-service").expect("Deployment");
    let volume = items(&deployment["spec"]["template"]["spec"]["volumes"])
        .find(|v| v["secret"]["secretName"].as_str() == Some("learngreek-jwt-signing-key"))
        .expect("the Secret is a volume");
    let mount = items(&containers(deployment)[0]["volumeMounts"])
        .find(|m| m["name"] == volume["name"])
        .expect("the volume is mounted");
    let key_name = keys(&secret["stringData"]).pop_first().expect("one key");

    // Assert
    assert_eq!(compose_file, "./deploy/dev-secrets/jwt-ed25519.pem");
    assert!(
        read(".gitignore")
            .lines()
            .any(|l| l == "/deploy/dev-secrets/")
    );
    let generate = up.find("openssl genpkey -algorithm ed25519 -out deploy/dev-secrets/");
    let start = up.find("docker compose up");
    assert!(
        generate.is_some() && generate < start,
        "`make up` must generate the key before starting compose"
    );
    assert_eq!(
        strings(&compose["services"]["session-service"]["secrets"]),
        ["jwt_private_key"]
    );
    assert_eq!(
        compose_environment(&compose["services"]["session-service"])["JWT_PRIVATE_KEY_FILE"],
        "/run/secrets/jwt_private_key"
    );
    assert!(
        !read("deploy/k8s/secret.yaml").contains("PRIVATE KEY-----"),
        "a real key must never be committed"
    );
    assert_eq!(
        pod_settings(&manifests, "session-service")["JWT_PRIVATE_KEY_FILE"],
        format!("{}/{key_name}", mount["mountPath"].as_str().unwrap())
    );
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
}

// ---------------------------------------------------------------------------------------
// deploy/k8s

struct Manifest {
    file: String,
    resource: Value,
}

fn k8s_files() -> Vec<String> {
    let dir = repo_root().join("deploy/k8s");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

fn manifests() -> Vec<Manifest> {
    k8s_files()
        .into_iter()
        .flat_map(|file| {
            yaml_documents(&read(&format!("deploy/k8s/{file}")))
                .into_iter()
                .map(move |resource| Manifest {
                    file: file.clone(),
                    resource,
                })
        })
        .collect()
}

fn kind(resource: &Value) -> &str {
    resource["kind"].as_str().unwrap_or_default()
}

fn metadata_name(resource: &Value) -> &str {
    resource["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(manifests: &'a [Manifest], wanted: &'a str) -> impl Iterator<Item = &'a Value> {
    manifests
        .iter()
        .map(|m| &m.resource)
        .filter(move |r| kind(r) == wanted)
}

fn find<'a>(manifests: &'a [Manifest], wanted_kind: &str, name: &str) -> Option<&'a Value> {
    manifests
        .iter()
        .map(|m| &m.resource)
        .find(|r| kind(r) == wanted_kind && metadata_name(r) == name)
}

/// Deployments and StatefulSets.
fn workloads(manifests: &[Manifest]) -> impl Iterator<Item = &Value> {
    manifests
        .iter()
        .map(|m| &m.resource)
        .filter(|r| ["Deployment", "StatefulSet"].contains(&kind(r)))
}

fn containers(workload: &Value) -> Vec<&Value> {
    let spec = &workload["spec"]["template"]["spec"];
    items(&spec["initContainers"])
        .chain(items(&spec["containers"]))
        .collect()
}

/// The settings a process's pod gets: its ConfigMaps (`envFrom`), then its `env` (a
/// Secret reference becomes `secret:<name>/<key>`, after checking that the key exists).
fn pod_settings(manifests: &[Manifest], binary: &str) -> BTreeMap<String, String> {
    let deployment = find(manifests, "Deployment", binary).expect("Deployment");
    let container = containers(deployment)[0];
    let mut settings = BTreeMap::new();
    for source in items(&container["envFrom"]) {
        let name = source["configMapRef"]["name"].as_str().unwrap_or_default();
        let config_map = find(manifests, "ConfigMap", name)
            .unwrap_or_else(|| panic!("{binary}: no ConfigMap {name}"));
        for (key, value) in config_map["data"].as_mapping().into_iter().flatten() {
            settings.insert(as_str(key).unwrap(), as_str(value).unwrap_or_default());
        }
    }
    for variable in items(&container["env"]) {
        let reference = &variable["valueFrom"]["secretKeyRef"];
        let value = if reference.is_null() {
            as_str(&variable["value"]).unwrap_or_default()
        } else {
            let (name, key) = (reference["name"].as_str(), reference["key"].as_str());
            let secret = find(manifests, "Secret", name.unwrap_or_default());
            assert!(
                secret.is_some_and(|s| !s["stringData"][key.unwrap_or_default()].is_null()),
                "{binary}: secretKeyRef {reference:?} names no Secret key"
            );
            format!("secret:{}/{}", name.unwrap(), key.unwrap())
        };
        settings.insert(as_str(&variable["name"]).unwrap(), value);
    }
    settings
}

/// The pod labels of a workload.
fn pod_labels(workload: &Value) -> BTreeMap<String, String> {
    workload["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((as_str(k)?, as_str(v)?)))
        .collect()
}

/// The number of a workload's container port named `name`.
fn container_port(workload: &Value, name: &str) -> Option<u16> {
    containers(workload)
        .iter()
        .flat_map(|c| items(&c["ports"]))
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| u16::try_from(p["containerPort"].as_u64()?).ok())
}

/// A Service's `selector`: plain labels, every one of which the pod must carry.
fn service_selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let selector = selector.as_mapping().cloned().unwrap_or_default();
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.get(&as_str(k).unwrap_or_default()) == as_str(v).as_ref())
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    // Arrange
    let Some(tools) = python_tools("kubernetes_manifests_validate_against_the_schemas") else {
        return;
    };
    let files: Vec<PathBuf> = k8s_files()
        .iter()
        .map(|f| repo_root().join("deploy/k8s").join(f))
        .collect();

    for version in KUBERNETES_VERSIONS {
        // Act
        let result = kubernetes_schemas(&tools, &files, version);

        // Assert
        if let Err(problems) = result {
            panic!("deploy/k8s against Kubernetes {version}: {problems}");
        }
    }
}

#[test]
fn schema_validation_rejects_a_probe_with_a_misspelt_field() {
    // Arrange: the session-service manifest with `service:` of the liveness probe misspelt.
    let Some(tools) = python_tools("schema_validation_rejects_a_probe_with_a_misspelt_field")
    else {
        return;
    };
    let text = read("deploy/k8s/session-service.yaml").replacen(
        "service: liveness",
        "servic: liveness",
        1,
    );
    let (dir, file) = scratch_file("session-service.yaml", &text);

    // Act
    let result = kubernetes_schemas(&tools, std::slice::from_ref(&file), KUBERNETES_VERSIONS[0]);
    fs::remove_dir_all(dir).ok();

    // Assert
    let problems = result.expect_err("the misspelt field was accepted");
    assert!(problems.contains("'servic' was unexpected"), "{problems}");
}

#[test]
fn kustomize_renders_every_manifest_into_the_namespace() {
    // Arrange
    let test = "kustomize_renders_every_manifest_into_the_namespace";
    let Some(mut kubectl) =
        tools::or_skip(tools::program("kubectl", &["version", "--client"]), test)
    else {
        return;
    };
    let kustomization = yaml("deploy/k8s/kustomization.yaml");

    // Act
    let output = kubectl
        .arg("kustomize")
        .arg(repo_root().join("deploy/k8s"))
        .output()
        .expect("run kubectl");

    // Assert
    assert!(
        output.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    assert_eq!(
        listed,
        k8s_files().into_iter().collect(),
        "kustomization.yaml resources"
    );
    let rendered = yaml_documents(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(
        rendered.len(),
        manifests().len(),
        "kustomize renders every manifest"
    );
    for resource in rendered.iter().filter(|r| kind(r) != "Namespace") {
        assert_eq!(
            resource["metadata"]["namespace"].as_str(),
            Some(NAMESPACE),
            "{} {}",
            kind(resource),
            metadata_name(resource)
        );
    }
}

#[test]
fn each_process_is_probed_over_grpc_with_the_liveness_and_readiness_health_names() {
    let manifests = manifests();
    for (binary, _, port) in BINARIES {
        // Arrange
        let deployment = find(&manifests, "Deployment", binary).expect("Deployment");
        let container = containers(deployment)[0];

        // Act
        let probe = |field: &str| {
            let grpc = &container[field]["grpc"];
            (grpc["port"].as_u64(), grpc["service"].as_str())
        };

        // Assert
        assert_eq!(container_port(deployment, "grpc"), Some(port), "{binary}");
        let port = Some(u64::from(port));
        assert_eq!(probe("startupProbe"), (port, Some("liveness")), "{binary}");
        assert_eq!(probe("livenessProbe"), (port, Some("liveness")), "{binary}");
        assert_eq!(
            probe("readinessProbe"),
            (port, Some("readiness")),
            "{binary}"
        );
    }
}

#[test]
fn every_pod_runs_as_non_root_with_a_read_only_root_filesystem() {
    let manifests = manifests();
    for workload in workloads(&manifests) {
        let name = metadata_name(workload);
        let pod = &workload["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true), "{name}");
        let uid = pod["runAsUser"].as_u64().unwrap_or(0);
        assert_ne!(uid, 0, "{name}: runAsUser");
        if BINARIES.iter().any(|(binary, _, _)| *binary == name) {
            assert_eq!(uid, 10001, "{name}: the Dockerfile's USER");
        }
        for container in containers(workload) {
            let security = &container["securityContext"];
            assert_eq!(
                security["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{name}"
            );
            assert_eq!(
                security["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{name}"
            );
            assert_eq!(
                strings(&security["capabilities"]["drop"]),
                ["ALL"],
                "{name}"
            );
        }
    }
}

#[test]
fn each_process_scales_with_an_autoscaler_on_requested_cpu_and_keeps_a_disruption_budget() {
    let manifests = manifests();
    for (binary, _, _) in BINARIES {
        // Arrange
        let deployment = find(&manifests, "Deployment", binary).expect("Deployment");
        let labels = pod_labels(deployment);

        // Act
        let hpa = of_kind(&manifests, "HorizontalPodAutoscaler")
            .find(|r| r["spec"]["scaleTargetRef"]["name"].as_str() == Some(binary))
            .unwrap_or_else(|| panic!("{binary}: no HorizontalPodAutoscaler"));
        let pdb = of_kind(&manifests, "PodDisruptionBudget")
            .find(|r| selects(&r["spec"]["selector"], &labels))
            .unwrap_or_else(|| panic!("{binary}: no PodDisruptionBudget"));

        // Assert
        let min = hpa["spec"]["minReplicas"].as_u64().unwrap_or(1);
        assert!(
            min >= 2,
            "{binary}: two replicas at least, so one can be disrupted"
        );
        assert!(
            hpa["spec"]["maxReplicas"].as_u64().unwrap_or(0) > min,
            "{binary}"
        );
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{binary}: `replicas` would fight the autoscaler on each apply"
        );
        // CPU utilisation is relative to the request: without one the autoscaler is blind.
        assert!(
            !containers(deployment)[0]["resources"]["requests"]["cpu"].is_null(),
            "{binary}: CPU request"
        );
        assert!(
            !pdb["spec"]["minAvailable"].is_null(),
            "{binary}: minAvailable"
        );
    }
}

#[test]
fn services_are_internal_and_the_grpc_services_are_headless() {
    let manifests = manifests();
    let services: Vec<&Value> = of_kind(&manifests, "Service").collect();
    for service in &services {
        // Arrange
        let name = metadata_name(service);
        let workload = workloads(&manifests)
            .find(|w| service_selects(&service["spec"]["selector"], &pod_labels(w)))
            .unwrap_or_else(|| panic!("Service {name} selects no pods"));

        // Assert: nothing is published outside the cluster (the gateway goes through
        // the ingress), and every target port is a container port of the selected pods.
        assert_eq!(
            service["spec"]["type"].as_str(),
            Some("ClusterIP"),
            "{name}"
        );
        for port in items(&service["spec"]["ports"]) {
            let target = port["targetPort"].as_str().unwrap_or_default();
            assert!(
                container_port(workload, target).is_some(),
                "Service {name}: targetPort {target} is no container port"
            );
        }
        // A gRPC client balances its calls itself over every ready pod's address.
        let headless = ["session-service", "deck-service"].contains(&name);
        assert_eq!(
            service["spec"]["clusterIP"].as_str() == Some("None"),
            headless,
            "{name}: clusterIP"
        );
    }
    for workload in workloads(&manifests) {
        let pod = &workload["spec"]["template"]["spec"];
        assert!(
            pod["hostNetwork"].is_null(),
            "{}: hostNetwork",
            metadata_name(workload)
        );
        for container in containers(workload) {
            let host_ports = items(&container["ports"]).filter(|p| !p["hostPort"].is_null());
            assert_eq!(
                host_ports.count(),
                0,
                "{}: hostPort",
                metadata_name(workload)
            );
        }
    }
    for (binary, _, _) in BINARIES {
        // Every other process's URL names a Service with that port.
        for (variable, url) in pod_settings(&manifests, binary)
            .into_iter()
            .filter(|(v, _)| v.ends_with("_URL") && v != "DATABASE_URL")
        {
            let (host, port) = url_host_port(&url);
            let service = services
                .iter()
                .find(|s| metadata_name(s) == host)
                .unwrap_or_else(|| panic!("{binary}: {variable} names no Service {host}"));
            let port = u64::from(port.unwrap_or(6379));
            assert!(
                items(&service["spec"]["ports"]).any(|p| p["port"].as_u64() == Some(port)),
                "{binary}: {variable} uses port {port}, which Service {host} lacks"
            );
        }
    }
}

#[test]
fn each_process_is_scraped_on_the_port_it_serves_metrics_on() {
    let manifests = manifests();
    for (binary, _, _) in BINARIES {
        // Arrange
        let deployment = find(&manifests, "Deployment", binary).expect("Deployment");
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        let settings = pod_settings(&manifests, binary);

        // Act: every process serves /metrics on METRICS_ADDR.
        let address = settings.get("METRICS_ADDR");
        let metrics_port = address.and_then(|a| a.rsplit_once(':')).map(|(_, p)| p);

        // Assert
        assert_eq!(
            annotations["prometheus.io/scrape"].as_str(),
            Some("true"),
            "{binary}"
        );
        assert_eq!(
            annotations["prometheus.io/path"].as_str(),
            Some("/metrics"),
            "{binary}"
        );
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            metrics_port,
            "{binary}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// NetworkPolicies, evaluated as Kubernetes does for TCP and UDP connections.

/// A pod as NetworkPolicies see it.
struct Pod {
    namespace: &'static str,
    labels: BTreeMap<String, String>,
}

impl Pod {
    fn new(namespace: &'static str, labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self { namespace, labels }
    }

    fn of(workload: &Value) -> Self {
        Self {
            namespace: NAMESPACE,
            labels: pod_labels(workload),
        }
    }

    fn name(&self) -> String {
        let name = self.labels.get("app.kubernetes.io/name").cloned();
        format!("{}/{}", self.namespace, name.unwrap_or_default())
    }
}

/// One end of a connection: a pod, or an address outside the cluster.
#[derive(Clone, Copy)]
enum Peer<'a> {
    Pod(&'a Pod),
    Outside,
}

/// A connection's destination port: protocol, number and (for a pod) its port name.
#[derive(Clone, Copy)]
struct Port<'a> {
    protocol: &'a str,
    number: u16,
    name: &'a str,
}

const fn tcp(number: u16) -> Port<'static> {
    Port {
        protocol: "TCP",
        number,
        name: "",
    }
}

/// A label selector (`matchLabels` and `matchExpressions`; `{}` selects everything).
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let mut match_labels = selector["matchLabels"].as_mapping().into_iter().flatten();
    let labels_match =
        match_labels.all(|(k, v)| labels.get(&as_str(k).unwrap_or_default()) == as_str(v).as_ref());
    let expressions_match = items(&selector["matchExpressions"]).all(|expression| {
        let value = labels.get(expression["key"].as_str().unwrap_or_default());
        let values = strings(&expression["values"]);
        match expression["operator"].as_str() {
            Some("In") => value.is_some_and(|v| values.contains(v)),
            Some("NotIn") => value.is_none_or(|v| !values.contains(v)),
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            other => panic!("unknown selector operator {other:?}"),
        }
    });
    selector.is_mapping() && labels_match && expressions_match
}

/// A rule's `ports` (absent: every port).
fn ports_match(ports: &Value, port: Port) -> bool {
    ports.is_null()
        || items(ports).any(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            let in_range = match (&p["port"], p["endPort"].as_u64()) {
                (Value::Null, _) => true,
                (Value::String(name), _) => name == port.name,
                (number, end) => {
                    let start = number.as_u64().unwrap_or(0);
                    (start..=end.unwrap_or(start)).contains(&u64::from(port.number))
                }
            };
            protocol == port.protocol && in_range
        })
}

/// A rule's `from`/`to` (absent: everyone). An `ipBlock` may hold any address, so it
/// counts as matching every peer.
fn peers_match(peers: &Value, peer: Peer) -> bool {
    peers.is_null()
        || items(peers).any(|p| match peer {
            _ if !p["ipBlock"].is_null() => true,
            Peer::Outside => false,
            Peer::Pod(pod) => {
                let namespace = BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    pod.namespace.to_owned(),
                )]);
                let namespace_ok = match &p["namespaceSelector"] {
                    Value::Null => pod.namespace == NAMESPACE,
                    selector => selects(selector, &namespace),
                };
                let pod_ok = p["podSelector"].is_null() || selects(&p["podSelector"], &pod.labels);
                namespace_ok && pod_ok
            }
        })
}

/// Whether the policies let `pod` take this direction's connection with `peer` on `port`:
/// true when no policy of that direction selects the pod, else when one of their rules
/// allows it.
fn policies_allow(policies: &[&Value], direction: &str, pod: &Pod, peer: Peer, port: Port) -> bool {
    let (rules, peers) = match direction {
        "Ingress" => ("ingress", "from"),
        _ => ("egress", "to"),
    };
    let applying: Vec<&&Value> = policies
        .iter()
        .filter(|policy| {
            let spec = &policy["spec"];
            let types = strings(&spec["policyTypes"]);
            let has_type = if types.is_empty() {
                direction == "Ingress" || !spec[rules].is_null()
            } else {
                types.iter().any(|t| t == direction)
            };
            pod.namespace == NAMESPACE && has_type && selects(&spec["podSelector"], &pod.labels)
        })
        .collect();
    applying.is_empty()
        || applying.iter().any(|policy| {
            items(&policy["spec"][rules])
                .any(|rule| ports_match(&rule["ports"], port) && peers_match(&rule[peers], peer))
        })
}

/// Whether `source` may open a connection to `port` of `destination`: both ends' policies.
fn connection_allowed(policies: &[&Value], source: Peer, destination: Peer, port: Port) -> bool {
    let egress = match source {
        Peer::Pod(pod) => policies_allow(policies, "Egress", pod, destination, port),
        Peer::Outside => true,
    };
    let ingress = match destination {
        Peer::Pod(pod) => policies_allow(policies, "Ingress", pod, source, port),
        Peer::Outside => true,
    };
    egress && ingress
}

#[test]
fn network_policies_open_each_port_to_its_clients_only() {
    // Arrange: the namespace's pods, and pods elsewhere as the policies know them.
    let manifests = manifests();
    let policies: Vec<&Value> = of_kind(&manifests, "NetworkPolicy").collect();
    let pod = |name: &str| {
        Pod::of(
            workloads(&manifests)
                .find(|w| metadata_name(w) == name)
                .unwrap_or_else(|| panic!("no workload {name}")),
        )
    };
    let [session, deck, gateway, redis_sessions, redis_cache] = [
        "session-service",
        "deck-service",
        "gateway",
        "redis-sessions",
        "redis-cache",
    ]
    .map(pod);
    let grpc_client = Pod::new(
        NAMESPACE,
        &[
            ("app.kubernetes.io/name", "reports"),
            ("learngreek.io/grpc-client", "true"),
        ],
    );
    let other = Pod::new(NAMESPACE, &[("app.kubernetes.io/name", "other")]);
    let prometheus = Pod::new("monitoring", &[("app.kubernetes.io/name", "prometheus")]);
    let ingress = Pod::new(
        "ingress-nginx",
        &[("app.kubernetes.io/name", "ingress-nginx")],
    );
    // The client label counts in this namespace only.
    let foreign_client = Pod::new("default", &[("learngreek.io/grpc-client", "true")]);
    let everyone = [
        &session,
        &deck,
        &gateway,
        &redis_sessions,
        &redis_cache,
        &grpc_client,
        &other,
        &prometheus,
        &ingress,
        &foreign_client,
    ];
    // (destination, container port name, the pods that may connect); everyone else may not.
    let expected: [(&Pod, &str, Vec<&Pod>); 10] = [
        (&session, "grpc", vec![&gateway, &deck, &grpc_client]),
        (&session, "metrics", vec![&prometheus]),
        (&deck, "grpc", vec![&gateway, &grpc_client]),
        (&deck, "metrics", vec![&prometheus]),
        // The gateway's HTTP port is the ingress's; /metrics has its own port. Its gRPC
        // port is for the kubelet's probes, which come from the node: NetworkPolicy
        // always lets those through.
        (&gateway, "http", vec![&ingress]),
        (&gateway, "metrics", vec![&prometheus]),
        (&gateway, "grpc", vec![]),
        (&redis_sessions, "redis", vec![&session, &gateway, &deck]),
        (&redis_cache, "redis", vec![&deck, &gateway]),
        // Any other pod of the namespace accepts nothing (default deny).
        (&other, "web", vec![]),
    ];

    // Act + Assert
    let mut covered = BTreeSet::new();
    for (destination, port_name, allowed) in &expected {
        let number = workloads(&manifests)
            .find(|w| Pod::of(w).labels == destination.labels)
            .map_or(Some(8080), |w| container_port(w, port_name))
            .unwrap_or_else(|| panic!("{}: no port {port_name}", destination.name()));
        covered.insert((destination.name(), number));
        let port = Port {
            protocol: "TCP",
            number,
            name: port_name,
        };
        for source in everyone {
            let actual =
                connection_allowed(&policies, Peer::Pod(source), Peer::Pod(destination), port);
            let wanted = allowed
                .iter()
                .any(|a| a.labels == source.labels && a.namespace == source.namespace);
            assert_eq!(
                actual,
                wanted,
                "{} -> {} port {port_name}",
                source.name(),
                destination.name()
            );
        }
    }
    // Every container port of the namespace is in the table above.
    for workload in workloads(&manifests) {
        for port in containers(workload).iter().flat_map(|c| items(&c["ports"])) {
            let number = port["containerPort"].as_u64().unwrap() as u16;
            assert!(
                covered.contains(&(Pod::of(workload).name(), number)),
                "{} port {number}: not covered by this test's table",
                metadata_name(workload)
            );
        }
    }
}

#[test]
fn only_the_two_services_may_open_connections_to_postgresql() {
    // Arrange: PostgreSQL is outside the namespace (secret.yaml's DATABASE_URLs, port 5432).
    let manifests = manifests();
    let policies: Vec<&Value> = of_kind(&manifests, "NetworkPolicy").collect();
    let pods: BTreeMap<String, Pod> = workloads(&manifests)
        .map(|w| (metadata_name(w).to_owned(), Pod::of(w)))
        .collect();
    let other = Pod::new(NAMESPACE, &[("app.kubernetes.io/name", "other")]);
    let postgres_port = manifests
        .iter()
        .filter(|m| m.file == "secret.yaml")
        .flat_map(|m| {
            m.resource["stringData"]
                .as_mapping()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|(_, value)| as_str(&value))
        .filter(|value| value.starts_with("postgres://"))
        .map(|url| url_host_port(&url).1.unwrap_or(5432))
        .collect::<BTreeSet<u16>>();
    assert_eq!(postgres_port, BTreeSet::from([5432]));
    let dns = Port {
        protocol: "UDP",
        number: 53,
        name: "",
    };

    for (name, pod) in pods
        .iter()
        .map(|(n, p)| (n.as_str(), p))
        .chain([("other", &other)])
    {
        // Act
        let reaches =
            |port: Port| connection_allowed(&policies, Peer::Pod(pod), Peer::Outside, port);

        // Assert: only the two services reach port 5432; nobody loses DNS or other ports.
        let client = ["session-service", "deck-service"].contains(&name);
        assert_eq!(reaches(tcp(5432)), client, "{name} -> PostgreSQL");
        for port in [dns, tcp(53), tcp(443), tcp(5431), tcp(5433), tcp(6379)] {
            assert!(
                reaches(port),
                "{name} -> port {}/{}",
                port.number,
                port.protocol
            );
        }
    }
}
