//! Redis seen from the server's side, for tests that count round trips or connections:
//! [`RedisMonitor`] records the commands every node of a URL runs (`MONITOR`), and
//! [`connections_to`] counts this process's TCP connections to them. Spoken in raw RESP,
//! so a test needs no Redis client (and cannot be fooled by one).

use std::{collections::HashSet, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// The client MONITOR names for the commands a Lua script runs (`redis.call`).
pub const SCRIPT_CLIENT: &str = "lua";

/// How long a node may take to show the end marker of a collection.
const MARKER_WAIT: Duration = Duration::from_secs(10);

/// One command a node ran, as `MONITOR` reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitoredCommand {
    /// `host:port` of the node that ran it.
    pub node: String,
    /// `host:port` of the client connection that sent it.
    pub client: String,
    /// The command name, upper-cased (`GET`, `EVALSHA`, `SCRIPT`, ...).
    pub name: String,
    /// The arguments after the name (binary bytes decoded lossily).
    pub args: Vec<String>,
}

/// `host:port` of every node behind a Redis URL: one node, or every node of a cluster
/// (`CLUSTER NODES` asked of the first seed of a comma-separated or `redis-cluster://` URL).
pub async fn redis_nodes(url: &str) -> Vec<String> {
    let seeds: Vec<String> = url.split(',').map(host_port).collect();
    let is_cluster = seeds.len() > 1 || url.starts_with("redis-cluster://");
    if !is_cluster {
        return seeds;
    }
    let mut connection = RawConnection::open(&seeds[0]).await;
    let nodes = connection.bulk(&["CLUSTER", "NODES"]).await;
    nodes
        .lines()
        .filter_map(|line| {
            let address = line.split_whitespace().nth(1)?;
            let address = address.split('@').next()?;
            Some(address.to_owned())
        })
        .collect()
}

/// `host:port` of one URL like `redis://user:password@host:port/1`.
fn host_port(url: &str) -> String {
    let rest = url.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or(rest);
    if rest.contains(':') {
        rest.to_owned()
    } else {
        format!("{rest}:6379")
    }
}

/// A plain connection speaking RESP, for the few commands the monitor sends itself.
struct RawConnection {
    stream: BufReader<TcpStream>,
}

impl RawConnection {
    async fn open(address: &str) -> Self {
        let stream = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("connect to Redis at {address}: {e}"));
        Self {
            stream: BufReader::new(stream),
        }
    }

    async fn send(&mut self, command: &[&str]) {
        let mut packed = format!("*{}\r\n", command.len());
        for part in command {
            packed.push_str(&format!("${}\r\n{part}\r\n", part.len()));
        }
        self.stream
            .get_mut()
            .write_all(packed.as_bytes())
            .await
            .expect("send a command to Redis");
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(MARKER_WAIT, self.stream.read_line(&mut line))
            .await
            .expect("Redis answers within 10 s")
            .expect("read from Redis");
        assert!(read > 0, "Redis closed the connection");
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    /// Sends `command` and returns its simple-string or bulk-string answer.
    async fn bulk(&mut self, command: &[&str]) -> String {
        self.send(command).await;
        let header = self.line().await;
        match header.as_bytes().first() {
            Some(b'+') => header[1..].to_owned(),
            Some(b'$') => {
                let len: usize = header[1..].parse().expect("bulk length");
                let mut body = vec![0; len + 2];
                self.stream
                    .read_exact(&mut body)
                    .await
                    .expect("read a bulk reply");
                body.truncate(len);
                String::from_utf8_lossy(&body).into_owned()
            }
            _ => panic!("Redis answered {command:?} with {header}"),
        }
    }
}

struct MonitoredNode {
    address: String,
    monitor: RawConnection,
}

/// Records what every node of a Redis URL runs, from [`start`](Self::start) on.
pub struct RedisMonitor {
    nodes: Vec<MonitoredNode>,
}

impl RedisMonitor {
    /// Starts `MONITOR` on every node of `url` (see [`redis_nodes`]).
    pub async fn start(url: &str) -> Self {
        let mut nodes = Vec::new();
        for address in redis_nodes(url).await {
            let mut monitor = RawConnection::open(&address).await;
            monitor.send(&["MONITOR"]).await;
            assert_eq!(monitor.line().await, "+OK", "MONITOR on {address}");
            nodes.push(MonitoredNode { address, monitor });
        }
        Self { nodes }
    }

    /// Every command the nodes ran since the last collection (or the start): each
    /// node is sent a marker on a connection of its own, and its commands are read up
    /// to that marker, so everything a caller got an answer to before is in.
    pub async fn collect(&mut self) -> Vec<MonitoredCommand> {
        let marker = format!("monitor-marker-{}", uuid::Uuid::new_v4().simple());
        let mut commands = Vec::new();
        for node in &mut self.nodes {
            let mut control = RawConnection::open(&node.address).await;
            assert_eq!(control.bulk(&["ECHO", &marker]).await, marker);
            loop {
                let line = node.monitor.line().await;
                let Some(command) = parse_monitor_line(&node.address, &line) else {
                    continue;
                };
                if command.name == "ECHO" && command.args == [marker.clone()] {
                    break;
                }
                commands.push(command);
            }
        }
        commands
    }

    /// The commands since the last collection that were sent on a connection which
    /// also sent some key starting with `prefix`: all that a process using `prefix`
    /// sent on its connections, pings and script loads included, and nothing of other
    /// processes (or of the scripts' own `redis.call`s, which MONITOR shows as "lua").
    pub async fn commands_of(&mut self, prefix: &str) -> Vec<MonitoredCommand> {
        let mut commands = self.collect().await;
        commands.retain(|command| command.client != SCRIPT_CLIENT);
        let clients: HashSet<(String, String)> = commands
            .iter()
            .filter(|command| command.args.iter().any(|arg| arg.starts_with(prefix)))
            .map(|command| (command.node.clone(), command.client.clone()))
            .collect();
        commands
            .into_iter()
            .filter(|command| clients.contains(&(command.node.clone(), command.client.clone())))
            .collect()
    }
}

/// The names of `commands`, in order: `["GET", "EVALSHA"]`.
pub fn command_names(commands: &[MonitoredCommand]) -> Vec<String> {
    commands
        .iter()
        .map(|command| command.name.clone())
        .collect()
}

/// `+1700000000.123456 [0 127.0.0.1:54321] "GET" "key"`, or `None` for anything else.
fn parse_monitor_line(node: &str, line: &str) -> Option<MonitoredCommand> {
    let line = line.strip_prefix('+')?;
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let client = line[open + 1..close].split_whitespace().nth(1)?.to_owned();
    let mut words = quoted_words(&line[close + 1..]).into_iter();
    let name = words.next()?.to_uppercase();
    Some(MonitoredCommand {
        node: node.to_owned(),
        client,
        name,
        args: words.collect(),
    })
}

/// The `"..."` words of a MONITOR line, with Redis's escapes (`\"`, `\\`, `\n`, `\xHH`, ...) undone.
fn quoted_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut bytes = text.bytes().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'"' {
            continue;
        }
        let mut word = Vec::new();
        while let Some(byte) = bytes.next() {
            match byte {
                b'"' => break,
                b'\\' => match bytes.next() {
                    Some(b'n') => word.push(b'\n'),
                    Some(b'r') => word.push(b'\r'),
                    Some(b't') => word.push(b'\t'),
                    Some(b'a') => word.push(7),
                    Some(b'b') => word.push(8),
                    Some(b'x') => {
                        let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                        let value = std::str::from_utf8(&hex)
                            .ok()
                            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                        word.push(value.unwrap_or(b'?'));
                    }
                    Some(other) => word.push(other),
                    None => break,
                },
                other => word.push(other),
            }
        }
        words.push(String::from_utf8_lossy(&word).into_owned());
    }
    words
}

/// TCP connections this process holds open (ESTABLISHED) to any of `nodes`
/// (`host:port`, as [`redis_nodes`] gives them), read from Linux's `/proc`.
pub fn connections_to(nodes: &[String]) -> usize {
    let ports: HashSet<u16> = nodes
        .iter()
        .filter_map(|node| node.rsplit_once(':')?.1.parse().ok())
        .collect();
    let own_sockets: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd (the tests run on Linux)")
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut count = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode`
        for fields in text
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
        {
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let port = remote
                .rsplit_once(':')
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            let established = *state == "01";
            let own = inode
                .parse()
                .is_ok_and(|inode: u64| own_sockets.contains(&inode));
            if established && own && port.is_some_and(|port| ports.contains(&port)) {
                count += 1;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_give_the_client_the_name_and_the_unescaped_arguments() {
        let line =
            r#"+1700000000.123456 [0 127.0.0.1:54321] "evalsha" "ab12" "2" "t1:{x}" "a\"b\\c\x01""#;

        let command = parse_monitor_line("127.0.0.1:6379", line).unwrap();

        assert_eq!(command.client, "127.0.0.1:54321");
        assert_eq!(command.name, "EVALSHA");
        assert_eq!(command.args, ["ab12", "2", "t1:{x}", "a\"b\\c\u{1}"]);
        assert!(parse_monitor_line("127.0.0.1:6379", "+OK").is_none());
    }

    #[test]
    fn urls_name_their_host_and_port() {
        assert_eq!(host_port("redis://127.0.0.1:7000/1"), "127.0.0.1:7000");
        assert_eq!(host_port(" redis://:secret@db:7001"), "db:7001");
        assert_eq!(host_port("redis-cluster://a"), "a:6379");
    }
}
