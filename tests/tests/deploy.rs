//! The deployment files, checked without a Docker engine or a cluster (none exists on the
//! build machines): `docker-compose.yml` and `deploy/Dockerfile` are parsed and checked
//! for the services, stages, healthchecks and Redis roles ARCHITECTURE.md asks for;
//! `deploy/k8s` is validated against the Kubernetes schemas with the `kubernetes-validate`
//! package and checked for probes, resources and security settings.
//!
//! Each check is a function returning the problems it finds, so the tests also show
//! that a broken file is reported (the checks cannot pass vacuously).
//!
//! Run: `scripts/test.sh -p test-support -E 'binary(deploy)'`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use serde_yaml::Value;

/// The three processes: binary name, crate directory, gRPC port.
const BINARIES: [(&str, &str, u16); 3] = [
    ("session-service", "services/session-service", 50051),
    ("deck-service", "services/deck-service", 50052),
    ("gateway", "gateway", 50050),
];

/// The Kubernetes versions the manifests must validate against: the oldest we support
/// (native gRPC probes are GA since 1.27) and the newest the pinned package bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Pinned so CI validates against the same bundled schemas every run (also in `.ci/run`).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

// ---------------------------------------------------------------------------------------
// Files and small YAML helpers.

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

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}"))
}

/// Every document of a multi-document YAML text (empty documents skipped).
fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("invalid YAML: {e}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn as_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().filter_map(as_str).collect())
        .unwrap_or_default()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_mapping()
        .map(|m| m.keys().filter_map(as_str).collect())
        .unwrap_or_default()
}

/// True when `flag value` appear next to each other in `args`.
fn has_flag(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2)
        .any(|pair| pair[0] == flag && pair[1] == value)
}

/// The settings of a redis.conf text, `name -> value` (comments and blanks skipped).
fn redis_conf(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(char::is_whitespace))
        .map(|(name, value)| (name.to_lowercase(), value.trim().to_owned()))
        .collect()
}

/// Host of a `scheme://[user[:password]@]host[:port][/path]` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some(host_port.split(':').next().unwrap_or(host_port))
}

fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host_port.rsplit_once(':')?.1.parse().ok()
}

fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
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

fn crate_dir_of(binary: &str) -> &'static str {
    BINARIES
        .iter()
        .find(|(name, _, _)| *name == binary)
        .map(|(_, dir, _)| *dir)
        .expect("known binary")
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

fn compose() -> Value {
    yaml(&read("docker-compose.yml"))
}

/// A compose service's environment as a map, whichever of the two syntaxes it uses.
fn compose_environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .filter_map(|(k, v)| Some((as_str(k)?, as_str(v).unwrap_or_default())))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item, String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A compose `command` as a list of arguments (a string is split on whitespace).
fn compose_command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        other => strings(other),
    }
}

fn check_compose(compose: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let services = &compose["services"];
    let names = keys(services);
    let expected = [
        "postgres",
        "redis-sessions",
        "redis-cache",
        "session-service",
        "deck-service",
        "gateway",
    ];
    for name in expected {
        if !names.contains(name) {
            problems.push(format!("service {name} is missing"));
        }
    }

    for name in &names {
        let service = &services[name.as_str()];
        let test = strings(&service["healthcheck"]["test"]);
        if test.len() < 2 || !["CMD", "CMD-SHELL"].contains(&test[0].as_str()) {
            problems.push(format!("{name}: no healthcheck test (got {test:?})"));
        }
        if service["healthcheck"]["disable"].as_bool() == Some(true) {
            problems.push(format!("{name}: healthcheck disabled"));
        }
        match &service["depends_on"] {
            Value::Null => {}
            Value::Mapping(deps) => {
                for (dep, settings) in deps {
                    let dep = as_str(dep).unwrap_or_default();
                    if !names.contains(&dep) {
                        problems.push(format!("{name}: depends on unknown service {dep}"));
                    }
                    if settings["condition"].as_str() != Some("service_healthy") {
                        problems.push(format!(
                            "{name}: depends_on {dep} must have condition: service_healthy"
                        ));
                    }
                }
            }
            _ => problems.push(format!(
                "{name}: depends_on must be a map with condition: service_healthy"
            )),
        }
    }

    let healthcheck = |name: &str| strings(&services[name]["healthcheck"]["test"]).join(" ");
    if !healthcheck("postgres").contains("pg_isready") {
        problems.push("postgres: healthcheck must run pg_isready".into());
    }
    for redis in ["redis-sessions", "redis-cache"] {
        if !healthcheck(redis).contains("redis-cli ping") {
            problems.push(format!("{redis}: healthcheck must run redis-cli ping"));
        }
    }
    for (binary, _, _) in BINARIES {
        let test = strings(&services[binary]["healthcheck"]["test"]);
        if test != ["CMD", binary, "healthcheck"] {
            problems.push(format!(
                "{binary}: healthcheck must be [CMD, {binary}, healthcheck], got {test:?}"
            ));
        }
        let build = &services[binary]["build"];
        if build["dockerfile"].as_str() != Some("deploy/Dockerfile")
            || build["target"].as_str() != Some(binary)
        {
            problems.push(format!(
                "{binary}: must build deploy/Dockerfile with target: {binary}"
            ));
        }
    }

    let sessions = compose_command(&services["redis-sessions"]);
    for (flag, value) in [
        ("--maxmemory-policy", "noeviction"),
        ("--appendonly", "yes"),
        ("--appendfsync", "everysec"),
    ] {
        if !has_flag(&sessions, flag, value) {
            problems.push(format!(
                "redis-sessions: command lacks {flag} {value} (got {sessions:?})"
            ));
        }
    }
    let cache = compose_command(&services["redis-cache"]);
    for (flag, value) in [
        ("--maxmemory", "128mb"),
        ("--maxmemory-policy", "allkeys-lru"),
        ("--appendonly", "no"),
        ("--save", ""),
    ] {
        if !has_flag(&cache, flag, value) {
            problems.push(format!(
                "redis-cache: command lacks {flag} {value:?} (got {cache:?})"
            ));
        }
    }
    if services["redis-cache"]["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(as_str)
        .any(|v| v.ends_with(":/data"))
    {
        problems.push("redis-cache: keeps no data, so it must not mount a /data volume".into());
    }

    let ports = strings(&services["gateway"]["ports"]);
    if !ports.iter().any(|p| p == "8000:8000") {
        problems.push(format!("gateway: must publish 8000:8000 (got {ports:?})"));
    }
    problems
}

#[test]
fn compose_file_runs_every_service_with_healthchecks_and_healthy_dependencies() {
    // Arrange
    let compose = compose();

    // Act
    let problems = check_compose(&compose);

    // Assert
    assert_no_problems("docker-compose.yml", problems);
}

#[test]
fn compose_check_reports_an_evicting_sessions_redis_and_a_dependency_that_only_waits_for_start() {
    // Arrange: the sessions Redis loses noeviction; the gateway waits only for its start.
    let text =
        read("docker-compose.yml").replacen("      - noeviction\n", "      - allkeys-lru\n", 1);
    let mut compose = yaml(&text);
    compose["services"]["gateway"]["depends_on"]["deck-service"]["condition"] =
        Value::from("service_started");

    // Act
    let problems = check_compose(&compose);

    // Assert
    assert!(
        problems
            .iter()
            .any(|p| p.contains("--maxmemory-policy noeviction")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("gateway: depends_on deck-service")),
        "{problems:?}"
    );
}

#[test]
fn compose_services_wait_for_each_dependency_they_have_a_url_for() {
    // Arrange
    let compose = compose();
    let services = &compose["services"];
    let expected: [(&str, &[&str]); 3] = [
        ("session-service", &["postgres", "redis-sessions"]),
        (
            "deck-service",
            &["postgres", "redis-cache", "session-service"],
        ),
        (
            "gateway",
            &["redis-cache", "session-service", "deck-service"],
        ),
    ];

    for (binary, dependencies) in expected {
        // Act
        let depends_on = keys(&services[binary]["depends_on"]);
        let url_hosts: BTreeSet<String> = compose_environment(&services[binary])
            .into_iter()
            .filter(|(name, _)| name.ends_with("_URL"))
            .filter_map(|(_, url)| url_host(&url).map(str::to_owned))
            .collect();

        // Assert
        let expected: BTreeSet<String> = dependencies.iter().map(|d| (*d).to_owned()).collect();
        assert_eq!(depends_on, expected, "{binary}: depends_on");
        assert_eq!(
            url_hosts, expected,
            "{binary}: the hosts of its *_URL variables must be exactly what it waits for"
        );
    }
}

#[test]
fn compose_environment_sets_the_variables_the_binaries_read() {
    // Arrange
    let compose = compose();
    let services = &compose["services"];
    let expected: [(&str, &[(&str, &str)]); 3] = [
        (
            "session-service",
            &[
                ("GRPC_ADDR", "0.0.0.0:50051"),
                (
                    "DATABASE_URL",
                    "postgres://postgres:postgres@postgres:5432/learngreek_sessions",
                ),
                ("SESSION_REDIS_URL", "redis://redis-sessions:6379"),
                ("JWT_PRIVATE_KEY_FILE", "/run/secrets/jwt_private_key"),
                ("LOG_FORMAT", "json"),
            ],
        ),
        (
            "deck-service",
            &[
                ("GRPC_ADDR", "0.0.0.0:50052"),
                (
                    "DATABASE_URL",
                    "postgres://postgres:postgres@postgres:5432/learngreek_decks",
                ),
                ("CACHE_REDIS_URL", "redis://redis-cache:6379"),
                ("SESSION_SERVICE_URL", "http://session-service:50051"),
            ],
        ),
        (
            "gateway",
            &[
                ("HTTP_ADDR", "0.0.0.0:8000"),
                ("GRPC_ADDR", "0.0.0.0:50050"),
                ("SESSION_SERVICE_URL", "http://session-service:50051"),
                ("DECK_SERVICE_URL", "http://deck-service:50052"),
                ("RATE_LIMIT_REDIS_URL", "redis://redis-cache:6379/1"),
            ],
        ),
    ];

    for (binary, variables) in expected {
        // Act
        let environment = compose_environment(&services[binary]);
        let known = variables_read_by(crate_dir_of(binary));

        // Assert
        for (name, value) in variables {
            assert_eq!(
                environment.get(*name).map(String::as_str),
                Some(*value),
                "{binary}: {name}"
            );
        }
        let unknown: Vec<_> = environment
            .keys()
            .filter(|name| !known.contains(*name))
            .collect();
        assert!(unknown.is_empty(), "{binary} reads none of {unknown:?}");
    }
}

#[test]
fn compose_gives_the_signing_key_as_a_secret_from_an_uncommitted_generated_file() {
    // Arrange
    let compose = compose();
    let gitignore = read(".gitignore");
    let makefile = read("Makefile");

    // Act
    let secret_file = compose["secrets"]["jwt_private_key"]["file"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mounted = strings(&compose["services"]["session-service"]["secrets"]);
    let up_target: String = makefile
        .split("\nup:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| l.starts_with('\t'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();

    // Assert
    assert_eq!(
        secret_file.trim_start_matches("./"),
        "deploy/dev-secrets/jwt-ed25519.pem"
    );
    assert_eq!(mounted, ["jwt_private_key"]);
    assert!(
        gitignore
            .lines()
            .any(|l| l.trim_matches('/') == "deploy/dev-secrets"),
        "deploy/dev-secrets/ must be git-ignored"
    );
    assert!(
        up_target
            .contains("openssl genpkey -algorithm ed25519 -out deploy/dev-secrets/jwt-ed25519.pem"),
        "`make up` must generate the dev key:\n{up_target}"
    );
    let generate = up_target.find("openssl genpkey").expect("generation step");
    let compose_up = up_target
        .find("docker compose up")
        .expect("docker compose up in `make up`");
    assert!(
        generate < compose_up,
        "`make up` must generate the key before starting compose"
    );
}

#[test]
fn postgres_init_script_creates_the_database_of_each_service() {
    // Arrange
    let compose = compose();
    let init = read("deploy/postgres/init.sql");
    let volumes = strings(&compose["services"]["postgres"]["volumes"]);

    // Act
    let databases: BTreeSet<String> = ["session-service", "deck-service"]
        .iter()
        .map(|s| {
            compose_environment(&compose["services"][*s])["DATABASE_URL"]
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();

    // Assert
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./deploy/postgres/init.sql:/docker-entrypoint-initdb.d/")),
        "{volumes:?}"
    );
    for database in &databases {
        assert!(
            init.contains(&format!("CREATE DATABASE {database};")),
            "init.sql must create {database}"
        );
    }
    assert_eq!(databases.len(), 2, "each service has its own database");
}

#[test]
fn redis_role_config_files_match_the_roles() {
    // Arrange
    let sessions = redis_conf(&read("deploy/redis/sessions.conf"));
    let cache = redis_conf(&read("deploy/redis/cache.conf"));

    // Assert
    assert_eq!(
        sessions.get("maxmemory-policy").map(String::as_str),
        Some("noeviction")
    );
    assert_eq!(sessions.get("appendonly").map(String::as_str), Some("yes"));
    assert_eq!(
        sessions.get("appendfsync").map(String::as_str),
        Some("everysec")
    );
    assert_eq!(cache.get("maxmemory").map(String::as_str), Some("128mb"));
    assert_eq!(
        cache.get("maxmemory-policy").map(String::as_str),
        Some("allkeys-lru")
    );
    assert_eq!(cache.get("appendonly").map(String::as_str), Some("no"));
    assert_eq!(
        cache.get("save").map(String::as_str),
        Some("\"\""),
        "the cache keeps no snapshots"
    );
}

// ---------------------------------------------------------------------------------------
// deploy/Dockerfile

#[derive(Debug)]
struct Stage {
    name: String,
    base: String,
    /// (INSTRUCTION, arguments), continuations joined, comments dropped.
    instructions: Vec<(String, String)>,
}

#[derive(Debug)]
struct Dockerfile {
    /// `ARG name=default` before the first FROM.
    global_args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn parse(text: &str) -> Self {
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                current.push_str(head);
                current.push(' ');
            } else {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
        let mut global_args = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical.iter().filter(|l| !l.trim().is_empty()) {
            let (instruction, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let instruction = instruction.to_uppercase();
            let args = args.trim().to_owned();
            if instruction == "FROM" {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                    _ => String::new(),
                };
                stages.push(Stage {
                    name,
                    base: words.first().copied().unwrap_or_default().to_owned(),
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push((instruction, args));
            } else if instruction == "ARG" {
                let (name, default) = args.split_once('=').unwrap_or((&args, ""));
                global_args.insert(name.to_owned(), default.to_owned());
            }
        }
        Dockerfile {
            global_args,
            stages,
        }
    }

    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The image a stage finally rests on, following `FROM <other stage>` and global ARGs.
    fn base_image(&self, stage: &Stage) -> String {
        let mut base = stage.base.clone();
        while let Some(parent) = self.stage(&base) {
            base = parent.base.clone();
        }
        for (name, value) in &self.global_args {
            base = base.replace(&format!("${{{name}}}"), value);
        }
        base
    }
}

impl Stage {
    fn all(&self, instruction: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(i, _)| i == instruction)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last().copied()
    }
}

/// The JSON (exec form) array at the end of an instruction's arguments.
fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str(&args[args.find('[')?..]).ok()
}

fn toolchain_channel() -> String {
    read("rust-toolchain.toml")
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("channel").map(|v| {
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .expect("rust-toolchain.toml has a channel")
}

fn check_dockerfile(dockerfile: &Dockerfile, toolchain: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(builder) = dockerfile.stage("builder") else {
        return vec!["no `FROM ... AS builder` stage".into()];
    };
    let builder_base = dockerfile.base_image(builder);
    if !builder_base.starts_with(&format!("rust:{toolchain}")) {
        problems.push(format!("builder must be on the official rust:{toolchain} image (rust-toolchain.toml), got {builder_base}"));
    }
    let build = builder
        .all("RUN")
        .into_iter()
        .find(|run| run.contains("cargo build"))
        .unwrap_or_default();
    if !build.contains("cargo build --release --bins --locked") {
        problems.push("builder must run `cargo build --release --bins --locked`".into());
    }
    if !build.contains("--mount=type=cache") {
        problems.push("builder must cache the registry and target with --mount=type=cache".into());
    }

    for (binary, _, port) in BINARIES {
        let Some(stage) = dockerfile.stage(binary) else {
            problems.push(format!("no `FROM ... AS {binary}` stage"));
            continue;
        };
        let base = dockerfile.base_image(stage);
        if base.starts_with("rust") || !(base.contains("slim") || base.contains("distroless")) {
            problems.push(format!(
                "{binary}: runtime base must be small (slim or distroless), got {base}"
            ));
        }
        match stage
            .last("USER")
            .map(|u| u.split(':').next().unwrap_or_default().parse::<u32>())
        {
            Some(Ok(uid)) if uid != 0 => {}
            other => problems.push(format!(
                "{binary}: USER must be a non-root numeric uid, got {other:?}"
            )),
        }
        let copies_binary = stage
            .all("COPY")
            .iter()
            .any(|c| c.contains("--from=builder") && c.contains(binary));
        if !copies_binary || !build.contains(&format!("target/release/{binary}")) {
            problems.push(format!(
                "{binary}: must copy target/release/{binary} from the builder"
            ));
        }
        let healthcheck = stage
            .last("HEALTHCHECK")
            .and_then(exec_form)
            .unwrap_or_default();
        let runs_own_healthcheck = healthcheck.len() == 2
            && healthcheck[0].ends_with(binary)
            && healthcheck[1] == "healthcheck";
        if !runs_own_healthcheck {
            problems.push(format!(
                "{binary}: HEALTHCHECK must run `{binary} healthcheck`, got {healthcheck:?}"
            ));
        }
        let entrypoint = stage
            .last("ENTRYPOINT")
            .and_then(exec_form)
            .unwrap_or_default();
        if entrypoint.first().is_none_or(|e| !e.ends_with(binary)) {
            problems.push(format!(
                "{binary}: ENTRYPOINT must be the binary, got {entrypoint:?}"
            ));
        }
        let exposed: Vec<&str> = stage
            .all("EXPOSE")
            .iter()
            .flat_map(|e| e.split_whitespace())
            .collect();
        if !exposed.contains(&port.to_string().as_str())
            || (binary == "gateway" && !exposed.contains(&"8000"))
        {
            problems.push(format!("{binary}: must EXPOSE its ports, got {exposed:?}"));
        }
    }
    problems
}

#[test]
fn dockerfile_builds_every_binary_once_and_runs_each_in_a_small_non_root_image() {
    // Arrange
    let dockerfile = Dockerfile::parse(&read("deploy/Dockerfile"));

    // Act
    let problems = check_dockerfile(&dockerfile, &toolchain_channel());

    // Assert
    assert_no_problems("deploy/Dockerfile", problems);
}

#[test]
fn dockerfile_check_reports_a_root_stage_and_a_missing_healthcheck() {
    // Arrange: the gateway stage loses its USER and HEALTHCHECK.
    let text = read("deploy/Dockerfile");
    let gateway_start = text.find("AS gateway").expect("gateway stage");
    let (head, gateway) = text.split_at(gateway_start);
    let gateway: String = gateway
        .lines()
        .filter(|l| {
            !l.starts_with("USER")
                && !l.starts_with("HEALTHCHECK")
                && !l.trim_start().starts_with("CMD")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dockerfile = Dockerfile::parse(&format!("{head}{gateway}"));

    // Act
    let problems = check_dockerfile(&dockerfile, &toolchain_channel());

    // Assert
    assert!(
        problems.iter().any(|p| p.starts_with("gateway: USER")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("gateway: HEALTHCHECK")),
        "{problems:?}"
    );
    assert_eq!(
        problems.len(),
        2,
        "only the gateway stage changed: {problems:?}"
    );
}

#[test]
fn compose_builds_stages_that_exist_in_the_dockerfile() {
    // Arrange
    let dockerfile = Dockerfile::parse(&read("deploy/Dockerfile"));
    let compose = compose();

    for (binary, _, _) in BINARIES {
        // Act
        let target = compose["services"][binary]["build"]["target"]
            .as_str()
            .unwrap_or_default();

        // Assert
        assert!(
            dockerfile.stage(target).is_some(),
            "{binary}: target {target:?} is not a Dockerfile stage"
        );
    }
}

#[test]
fn docker_build_context_leaves_out_build_output_and_secrets() {
    // Arrange
    let ignore = read("deploy/Dockerfile.dockerignore");
    let lines: BTreeSet<&str> = ignore.lines().map(str::trim).collect();

    // Assert
    for entry in ["target", ".git", "deploy/dev-secrets", ".local"] {
        assert!(
            lines.contains(entry),
            "deploy/Dockerfile.dockerignore must exclude {entry}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Environment examples

#[test]
fn env_examples_document_each_variable_with_a_comment_and_name_only_real_ones() {
    for (binary, crate_dir, _) in BINARIES {
        // Arrange
        let path = format!("deploy/env/{binary}.env.example");
        let text = read(&path);
        let known = variables_read_by(crate_dir);
        let mut seen = BTreeSet::new();
        let mut previous_is_comment = false;

        // Act + Assert: every `NAME=value` (also a commented-out `# NAME=`) follows a comment.
        for line in text.lines().map(str::trim) {
            let setting = line.trim_start_matches("# ");
            let is_setting = setting.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            });
            if is_setting {
                let name = setting.split_once('=').unwrap().0.to_owned();
                assert!(
                    previous_is_comment,
                    "{path}: {name} has no comment above it"
                );
                assert!(
                    known.contains(&name),
                    "{path}: {binary} does not read {name}"
                );
                assert!(seen.insert(name.clone()), "{path}: {name} appears twice");
            }
            previous_is_comment = line.starts_with('#');
        }
        assert!(
            seen.contains("GRPC_ADDR") && seen.contains("LOG_FORMAT"),
            "{path}: too few variables: {seen:?}"
        );
    }
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
        .filter(|name| {
            (name.ends_with(".yaml") || name.ends_with(".yml")) && name != "kustomization.yaml"
        })
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

fn name(resource: &Value) -> &str {
    resource["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(manifests: &'a [Manifest], wanted_kind: &str, wanted_name: &str) -> Option<&'a Value> {
    manifests
        .iter()
        .map(|m| &m.resource)
        .find(|r| kind(r) == wanted_kind && name(r) == wanted_name)
}

/// Deployments and StatefulSets.
fn workloads(manifests: &[Manifest]) -> Vec<&Value> {
    manifests
        .iter()
        .map(|m| &m.resource)
        .filter(|r| ["Deployment", "StatefulSet"].contains(&kind(r)))
        .collect()
}

fn containers(workload: &Value) -> Vec<&Value> {
    let spec = &workload["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .flat_map(|field| spec[*field].as_sequence().into_iter().flatten())
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().cloned().unwrap_or_default();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `python3 -m kubernetes_validate`, installing the package when it is missing; `None`
/// (and a printed reason) only when python3 or pip are absent.
fn kubernetes_validate() -> Option<Command> {
    let python_works = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !python_works(&["--version"]) {
        eprintln!(
            "SKIPPED: python3 is not installed, so the Kubernetes schemas cannot be checked (.ci/run installs it)"
        );
        return None;
    }
    if !python_works(&["-c", "import kubernetes_validate"]) {
        if !python_works(&["-m", "pip", "--version"]) {
            eprintln!(
                "SKIPPED: pip is not installed for python3, so kubernetes-validate cannot be installed"
            );
            return None;
        }
        // Several test processes may get here at once; one installs, the others wait.
        let lock_path = std::env::temp_dir().join("learngreek-kubernetes-validate.lock");
        let lock = fs::File::create(&lock_path).expect("create the install lock file");
        lock.lock().expect("take the install lock");
        if !python_works(&["-c", "import kubernetes_validate"]) {
            let pip = [
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                KUBERNETES_VALIDATE,
            ];
            let installed = python_works(&pip)
                || python_works(&[&pip[..], &["--break-system-packages"]].concat());
            assert!(
                installed,
                "`python3 -m pip install {KUBERNETES_VALIDATE}` failed"
            );
        }
        drop(lock);
    }
    let mut command = Command::new("python3");
    command.args(["-m", "kubernetes_validate", "--strict"]);
    Some(command)
}

/// Runs kubernetes-validate on `files` for `version`; the problems found (a resource whose
/// kind has no schema counts: it was not checked).
fn validate(mut validator: Command, files: &[PathBuf], version: &str) -> Vec<String> {
    let output = validator
        .arg("-k")
        .arg(version)
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut problems: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("WARN") || l.contains("Traceback"))
        .map(str::to_owned)
        .collect();
    if !output.status.success() && problems.is_empty() {
        problems.push(format!(
            "kubernetes-validate exited with {}: {text}",
            output.status
        ));
    }
    problems
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    // Arrange
    let Some(_) = kubernetes_validate() else {
        return;
    };
    let files: Vec<PathBuf> = k8s_files()
        .iter()
        .map(|f| repo_root().join("deploy/k8s").join(f))
        .collect();
    assert!(files.len() >= 5, "too few manifests: {files:?}");

    for version in KUBERNETES_VERSIONS {
        // Act
        let problems = validate(kubernetes_validate().unwrap(), &files, version);

        // Assert
        assert_no_problems(
            &format!("deploy/k8s against Kubernetes {version}"),
            problems,
        );
    }
}

#[test]
fn schema_validation_rejects_a_probe_with_a_misspelt_field() {
    // Arrange: the session-service manifest with `service:` of the liveness probe misspelt.
    let Some(validator) = kubernetes_validate() else {
        return;
    };
    let text = read("deploy/k8s/session-service.yaml").replacen(
        "service: liveness",
        "servic: liveness",
        1,
    );
    let dir = std::env::temp_dir().join(format!("learngreek-k8s-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("session-service.yaml");
    fs::write(&file, text).unwrap();

    // Act
    let problems = validate(
        validator,
        std::slice::from_ref(&file),
        KUBERNETES_VERSIONS[0],
    );
    fs::remove_dir_all(&dir).ok();

    // Assert
    assert!(
        problems.iter().any(|p| p.contains("servic")),
        "the misspelt field was not reported: {problems:?}"
    );
}

#[test]
fn kustomization_lists_every_manifest_and_nothing_else() {
    // Arrange
    let kustomization = yaml(&read("deploy/k8s/kustomization.yaml"));

    // Act
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();

    // Assert
    assert_eq!(listed, k8s_files().into_iter().collect::<BTreeSet<_>>());
    assert_eq!(kustomization["kind"].as_str(), Some("Kustomization"));
}

#[test]
fn each_process_has_a_deployment_probed_over_grpc_on_liveness_and_readiness() {
    let manifests = manifests();
    for (binary, _, port) in BINARIES {
        // Arrange
        let deployment = find(&manifests, "Deployment", binary)
            .unwrap_or_else(|| panic!("no Deployment {binary}"));
        let container = containers(deployment)[0];

        // Act
        let probe = |field: &str| {
            (
                container[field]["grpc"]["port"].as_u64(),
                container[field]["grpc"]["service"].as_str(),
            )
        };
        let container_ports: Vec<u64> = container["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();

        // Assert
        assert_eq!(
            probe("livenessProbe"),
            (Some(u64::from(port)), Some("liveness")),
            "{binary}: livenessProbe"
        );
        assert_eq!(
            probe("readinessProbe"),
            (Some(u64::from(port)), Some("readiness")),
            "{binary}: readinessProbe"
        );
        assert!(
            container_ports.contains(&u64::from(port)),
            "{binary}: the probed port is not a container port"
        );
        assert!(
            container["image"]
                .as_str()
                .is_some_and(|i| i.contains(binary)),
            "{binary}: image"
        );
    }
}

#[test]
fn every_container_has_resource_requests_and_limits() {
    let manifests = manifests();
    let workloads = workloads(&manifests);
    assert!(
        workloads.len() >= 5,
        "three processes and two Redis roles expected"
    );
    for workload in workloads {
        for container in containers(workload) {
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        !container["resources"][bound][resource].is_null(),
                        "{}/{}: resources.{bound}.{resource} is missing",
                        name(workload),
                        container["name"].as_str().unwrap_or_default()
                    );
                }
            }
        }
    }
}

#[test]
fn every_pod_runs_as_non_root_with_a_read_only_root_filesystem() {
    let manifests = manifests();
    for workload in workloads(&manifests) {
        let pod = &workload["spec"]["template"]["spec"]["securityContext"];
        let pod_uid = pod["runAsUser"].as_u64();
        assert_eq!(
            pod["runAsNonRoot"].as_bool(),
            Some(true),
            "{}: pod runAsNonRoot",
            name(workload)
        );
        for container in containers(workload) {
            let security = &container["securityContext"];
            let uid = security["runAsUser"].as_u64().or(pod_uid);
            assert!(
                uid.is_some_and(|uid| uid != 0),
                "{}: must run as a non-zero uid",
                name(workload)
            );
            assert_eq!(
                security["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{}: readOnlyRootFilesystem",
                name(workload)
            );
            assert_eq!(
                security["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{}: allowPrivilegeEscalation",
                name(workload)
            );
            assert_eq!(
                strings(&security["capabilities"]["drop"]),
                ["ALL"],
                "{}: capabilities",
                name(workload)
            );
        }
    }
}

#[test]
fn each_process_scales_with_an_autoscaler_and_keeps_a_disruption_budget() {
    let manifests = manifests();
    for (binary, _, _) in BINARIES {
        // Arrange
        let deployment = find(&manifests, "Deployment", binary).expect("deployment");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];

        // Act
        let hpa = manifests.iter().map(|m| &m.resource).find(|r| {
            kind(r) == "HorizontalPodAutoscaler"
                && r["spec"]["scaleTargetRef"]["name"].as_str() == Some(binary)
        });
        let pdb = manifests.iter().map(|m| &m.resource).find(|r| {
            kind(r) == "PodDisruptionBudget"
                && labels_match(&r["spec"]["selector"]["matchLabels"], pod_labels)
        });

        // Assert
        let hpa = hpa.unwrap_or_else(|| panic!("{binary}: no HorizontalPodAutoscaler"));
        assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
        assert_eq!(
            hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
            Some("Deployment")
        );
        let min = hpa["spec"]["minReplicas"].as_u64().unwrap_or(1);
        assert!(
            min >= 2,
            "{binary}: at least two replicas, so one can be disrupted"
        );
        assert!(
            hpa["spec"]["maxReplicas"].as_u64().unwrap_or(0) > min,
            "{binary}: the autoscaler must be able to scale out"
        );
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{binary}: `replicas` would fight the autoscaler on each apply"
        );
        let pdb =
            pdb.unwrap_or_else(|| panic!("{binary}: no PodDisruptionBudget selecting its pods"));
        assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1"));
    }
}

#[test]
fn services_select_existing_pods_and_named_ports() {
    let manifests = manifests();
    let services: Vec<&Value> = manifests
        .iter()
        .map(|m| &m.resource)
        .filter(|r| kind(r) == "Service")
        .collect();
    for (binary, _, _) in BINARIES {
        assert!(
            services.iter().any(|s| name(s) == binary),
            "{binary}: no Service"
        );
    }
    for service in services {
        let workload = workloads(&manifests)
            .into_iter()
            .find(|w| {
                labels_match(
                    &service["spec"]["selector"],
                    &w["spec"]["template"]["metadata"]["labels"],
                )
            })
            .unwrap_or_else(|| panic!("Service {} selects no pods", name(service)));
        let port_names: Vec<String> = containers(workload)
            .iter()
            .flat_map(|c| c["ports"].as_sequence().into_iter().flatten())
            .filter_map(|p| as_str(&p["name"]))
            .collect();
        for port in service["spec"]["ports"].as_sequence().into_iter().flatten() {
            let target = as_str(&port["targetPort"]).unwrap_or_default();
            assert!(
                port_names.contains(&target),
                "Service {}: targetPort {target} is not a container port",
                name(service)
            );
        }
    }
}

#[test]
fn process_settings_name_variables_the_binaries_read_and_services_that_exist() {
    let manifests = manifests();
    for (binary, crate_dir, _) in BINARIES {
        // Arrange
        let known = variables_read_by(crate_dir);
        let deployment = find(&manifests, "Deployment", binary).expect("deployment");
        let container = containers(deployment)[0];

        // Act
        let mut settings = BTreeMap::new();
        for source in container["envFrom"].as_sequence().into_iter().flatten() {
            let config_map_name = source["configMapRef"]["name"]
                .as_str()
                .expect("envFrom is a ConfigMap");
            let config_map = find(&manifests, "ConfigMap", config_map_name)
                .unwrap_or_else(|| panic!("{binary}: ConfigMap {config_map_name} does not exist"));
            for (key, value) in config_map["data"].as_mapping().into_iter().flatten() {
                settings.insert(as_str(key).unwrap(), as_str(value).unwrap_or_default());
            }
        }
        for variable in container["env"].as_sequence().into_iter().flatten() {
            settings.insert(
                as_str(&variable["name"]).unwrap(),
                as_str(&variable["value"]).unwrap_or_default(),
            );
            let secret = &variable["valueFrom"]["secretKeyRef"];
            if !secret.is_null() {
                let found = find(
                    &manifests,
                    "Secret",
                    secret["name"].as_str().unwrap_or_default(),
                )
                .is_some_and(|s| {
                    !s["stringData"][secret["key"].as_str().unwrap_or_default()].is_null()
                });
                assert!(
                    found,
                    "{binary}: secretKeyRef {secret:?} names no Secret key"
                );
            }
        }

        // Assert
        let unknown: Vec<_> = settings
            .keys()
            .filter(|name| !known.contains(*name))
            .collect();
        assert!(unknown.is_empty(), "{binary} reads none of {unknown:?}");
        assert_eq!(
            settings.get("LOG_FORMAT").map(String::as_str),
            Some("json"),
            "{binary}: production logs are JSON"
        );
        assert!(
            settings.contains_key("DATABASE_URL") || binary == "gateway",
            "{binary}: DATABASE_URL"
        );
        for (variable, url) in settings
            .iter()
            .filter(|(name, _)| name.ends_with("_URL") && *name != "DATABASE_URL")
        {
            let host = url_host(url).unwrap_or_default();
            let service = find(&manifests, "Service", host)
                .unwrap_or_else(|| panic!("{binary}: {variable} names no Service {host}"));
            let ports: Vec<u64> = service["spec"]["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_u64())
                .collect();
            let port = url_port(url).unwrap_or(6379);
            assert!(
                ports.contains(&u64::from(port)),
                "{binary}: {variable} uses port {port}, Service {host} has {ports:?}"
            );
        }
    }
}

#[test]
fn signing_key_secret_is_a_placeholder_mounted_as_the_file_session_service_reads() {
    // Arrange
    let manifests = manifests();
    let secret =
        find(&manifests, "Secret", "learngreek-jwt-signing-key").expect("signing key Secret");
    let deployment = find(&manifests, "Deployment", "session-service").expect("deployment");
    let config = find(&manifests, "ConfigMap", "session-service").expect("ConfigMap");
    let pod = &deployment["spec"]["template"]["spec"];

    // Act
    let volume = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["secret"]["secretName"].as_str() == Some("learngreek-jwt-signing-key"))
        .expect("the Secret is a volume");
    let mount = containers(deployment)[0]["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == volume["name"])
        .expect("the volume is mounted");
    let key_file = config["data"]["JWT_PRIVATE_KEY_FILE"]
        .as_str()
        .unwrap_or_default();

    // Assert
    let all_secret_text = manifests
        .iter()
        .filter(|m| kind(&m.resource) == "Secret")
        .map(|m| read(&format!("deploy/k8s/{}", m.file)))
        .collect::<String>();
    assert!(
        !all_secret_text.contains("PRIVATE KEY-----"),
        "a real key must never be committed"
    );
    let (key_name, _) = secret["stringData"]
        .as_mapping()
        .and_then(|m| m.iter().next())
        .expect("one key");
    let expected = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap(),
        as_str(key_name).unwrap()
    );
    assert_eq!(
        key_file, expected,
        "JWT_PRIVATE_KEY_FILE must be the mounted Secret file"
    );
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
}

#[test]
fn sessions_redis_never_evicts_and_persists_while_cache_redis_evicts_least_recently_used() {
    // Arrange
    let manifests = manifests();
    let conf = |name: &str| {
        let config_map =
            find(&manifests, "ConfigMap", name).unwrap_or_else(|| panic!("no ConfigMap {name}"));
        redis_conf(
            config_map["data"]["redis.conf"]
                .as_str()
                .unwrap_or_default(),
        )
    };
    let mounts_config = |workload: &Value, config_map: &str| {
        workload["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|v| v["configMap"]["name"].as_str() == Some(config_map))
            && strings(&containers(workload)[0]["command"])
                .iter()
                .any(|a| a.ends_with("redis.conf"))
    };

    // Act
    let sessions = conf("redis-sessions");
    let cache = conf("redis-cache");
    let sessions_workload = workloads(&manifests)
        .into_iter()
        .find(|w| name(w) == "redis-sessions")
        .expect("redis-sessions workload");
    let cache_workload = workloads(&manifests)
        .into_iter()
        .find(|w| name(w) == "redis-cache")
        .expect("redis-cache workload");

    // Assert
    assert_eq!(
        sessions.get("maxmemory-policy").map(String::as_str),
        Some("noeviction")
    );
    assert_eq!(sessions.get("appendonly").map(String::as_str), Some("yes"));
    assert_eq!(
        sessions.get("appendfsync").map(String::as_str),
        Some("everysec")
    );
    assert!(
        mounts_config(sessions_workload, "redis-sessions"),
        "redis-sessions must run with its config"
    );
    assert_eq!(
        kind(sessions_workload),
        "StatefulSet",
        "sessions must survive a pod restart (persistent volume)"
    );
    assert!(
        !sessions_workload["spec"]["volumeClaimTemplates"].is_null(),
        "sessions Redis needs a persistent volume"
    );
    assert_eq!(
        cache.get("maxmemory-policy").map(String::as_str),
        Some("allkeys-lru")
    );
    assert_eq!(cache.get("maxmemory").map(String::as_str), Some("128mb"));
    assert!(
        mounts_config(cache_workload, "redis-cache"),
        "redis-cache must run with its config"
    );
}

#[test]
fn each_process_is_scraped_on_the_port_it_serves_metrics_on() {
    let manifests = manifests();
    for (binary, _, _) in BINARIES {
        // Arrange
        let deployment = find(&manifests, "Deployment", binary).expect("deployment");
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        let config = find(&manifests, "ConfigMap", binary).expect("ConfigMap");
        let container = containers(deployment)[0];

        // Act
        let scrape_port: Option<u64> = annotations["prometheus.io/port"]
            .as_str()
            .and_then(|p| p.parse().ok());
        let container_ports: Vec<u64> = container["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        // The services serve /metrics on METRICS_ADDR; the gateway on its HTTP port.
        let metrics_addr = config["data"]["METRICS_ADDR"]
            .as_str()
            .or(config["data"]["HTTP_ADDR"].as_str());
        let metrics_port: Option<u64> = metrics_addr
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());

        // Assert
        assert_eq!(
            annotations["prometheus.io/scrape"].as_str(),
            Some("true"),
            "{binary}: scrape annotation"
        );
        assert_eq!(
            annotations["prometheus.io/path"].as_str(),
            Some("/metrics"),
            "{binary}: metrics path"
        );
        assert!(
            scrape_port.is_some_and(|p| container_ports.contains(&p)),
            "{binary}: scrape port {scrape_port:?} is not a container port"
        );
        assert_eq!(
            scrape_port, metrics_port,
            "{binary}: scrape port and the address /metrics is served on"
        );
    }
}

#[test]
fn kustomize_renders_the_manifests_into_the_namespace_and_they_validate() {
    // Arrange: kubectl is optional on build machines; the schema test above always runs.
    let kubectl_works = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !kubectl_works {
        eprintln!(
            "SKIPPED: kubectl is not installed, so `kubectl kustomize deploy/k8s` cannot be rendered"
        );
        return;
    }
    let Some(validator) = kubernetes_validate() else {
        return;
    };

    // Act
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_root().join("deploy/k8s"))
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).expect("UTF-8 output");
    let dir = std::env::temp_dir().join(format!("learngreek-kustomize-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rendered.yaml");
    fs::write(&file, &rendered).unwrap();
    let problems = validate(
        validator,
        std::slice::from_ref(&file),
        KUBERNETES_VERSIONS[0],
    );
    fs::remove_dir_all(&dir).ok();

    // Assert
    assert_no_problems("kubectl kustomize deploy/k8s", problems);
    let resources = yaml_documents(&rendered);
    assert_eq!(
        resources.len(),
        manifests().len(),
        "kustomize renders every manifest"
    );
    for resource in resources.iter().filter(|r| kind(r) != "Namespace") {
        assert_eq!(
            resource["metadata"]["namespace"].as_str(),
            Some("learngreek"),
            "{} {}",
            kind(resource),
            name(resource)
        );
    }
}
